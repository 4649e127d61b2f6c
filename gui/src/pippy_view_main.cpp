// pippy-view: the timeline viewer. Thin: argument parsing around TimelineView.
#include <QApplication>
#include <QImage>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "pippy/gui/main_window.hpp"
#include "pippy/gui/timeline_view.hpp"

namespace {
// Asked for (--help): on stdout, status 0; after a mistake: on stderr, status 2.
int usage(const char* why) {
  std::ostream& out = why ? std::cerr : std::cout;
  if (why)
    out << "pippy-view: " << why << "\n";
  out << "usage: pippy-view [TRACE [TRACE]]                   open one or two traces (predicted above measured)\n"
               "       pippy-view --live HOST:PORT | FILE.jsonl       follow a running job\n"
               "       pippy-view --export out.png|out.svg [--width W (1600) --height H (fits every rank)] TRACE...   render offscreen\n"
               "keys and mouse (also Help > Keys and mouse, or ?):\n";
  for (const auto& [keys, what] : pippy::gui::TimelineView::key_bindings())
    out << "  " << keys.toStdString() << ": " << what.toStdString() << "\n";
  return why ? 2 : 0;
}
} // namespace

int main(int argc, char** argv) {
  std::string live, exp;
  int w = pippy::gui::TimelineView::default_export_width, h = 0;
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
  if (!exp.empty()) {
    if (files.isEmpty())
      return usage("--export needs at least one TRACE");
    pippy::gui::TimelineView view;
    const bool ok = view.open_files(files);
    QString note;
    const bool written = view.export_to(QString::fromStdString(exp), w, h, &note);
    for (const QString& line : note.split('\n', Qt::SkipEmptyParts)) // each line as the other messages
      std::cerr << "pippy-view: " << line.toStdString() << "\n";
    return written && ok ? 0 : 1;
  }
  pippy::gui::MainWindow window;
  if (!files.isEmpty())
    window.open(files);
  if (!live.empty())
    window.connect_live(QString::fromStdString(live)); // shows its connection state in the window title
  window.resize(1400, 760);
  window.show();
  return app.exec();
}
