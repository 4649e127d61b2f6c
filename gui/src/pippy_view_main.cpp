// pippy-view: the timeline viewer. Thin: argument parsing around TimelineView.
#include <QApplication>
#include <QImage>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "pippy/gui/timeline_view.hpp"

namespace {
// Asked for (--help): on stdout, status 0; after a mistake: on stderr, status 2.
int usage(const char* why) {
  std::ostream& out = why ? std::cerr : std::cout;
  if (why)
    out << "pippy-view: " << why << "\n";
  out << "usage: pippy-view [TRACE [TRACE]]                   open one or two traces (predicted above measured)\n"
               "       pippy-view --live HOST:PORT | FILE.jsonl       follow a running job\n"
               "       pippy-view --export out.png [--width W (1600) --height H (fits every rank)] TRACE...   render offscreen\n"
               "keys: +/- zoom, arrows pan, F fit, End follow live head; wheel zooms, shift+wheel or drag pans\n";
  return why ? 2 : 0;
}
} // namespace

int main(int argc, char** argv) {
  std::string live, exp;
  int w = 1600, h = 0;
  QStringList files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-h" || a == "--help")
      return usage(nullptr);
    if (a == "--live" || a == "--export" || a == "--width" || a == "--height") {
      const char* v = value();
      if (!v)
        return usage((a + " needs a value").c_str());
      if (a == "--live")
        live = v;
      else if (a == "--export")
        exp = v;
      else {
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (!end || *end || n < 100 || n > 20000)
          return usage((a + " must be a number of pixels between 100 and 20000").c_str());
        (a == "--width" ? w : h) = static_cast<int>(n);
      }
    } else if (!a.empty() && a[0] == '-') {
      return usage(("unknown option " + a).c_str());
    } else {
      files << QString::fromStdString(a);
    }
  }
  const char* platform = std::getenv("QT_QPA_PLATFORM");
  if (!exp.empty() && (platform == nullptr || *platform == 0)) // --export never needs a display
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  pippy::gui::TimelineView view;
  bool ok = files.isEmpty() || view.open_files(files);
  if (!exp.empty()) {
    if (files.isEmpty())
      return usage("--export needs at least one TRACE");
    // Every lane, or say what is cut: a given height too small grows to fit, up to the limit of 20000.
    const int fits = view.fitting_height(), limit = 20000;
    if (h == 0) {
      h = std::clamp(fits, 200, limit);
    } else if (h < fits) {
      std::cerr << "pippy-view: --height " << h << " would cut lanes off (all of them need " << fits << " px): ";
      h = std::min(fits, limit);
      std::cerr << "the image is " << h << " px high\n";
    }
    if (fits > h)
      std::cerr << "pippy-view: the lanes need " << fits << " px; the image shows the top " << h << " px\n";
    const QImage img = view.render_image(QSize(w, h));
    if (!img.save(QString::fromStdString(exp))) {
      std::cerr << "pippy-view: cannot write " << exp << "\n";
      return 1;
    }
    return ok ? 0 : 1;
  }
  view.setWindowTitle("pippy-view");
  if (!live.empty())
    view.start_live(QString::fromStdString(live)); // shows its connection state in the window title
  view.resize(1400, 700);
  view.show();
  return app.exec();
}
