// pippy-view's desktop window (issue 16): menus and toolbar, legend, keys help, status bar, recent files,
// reload, export through the menu, zoom to a step. Offscreen: the actions that would ask the user
// (file dialogs, a step) are given their answers.
#include <catch2/catch.hpp>

#include <QAction>
#include <QFileInfo>
#include <QMouseEvent>
#include <QSettings>
#include <QTemporaryDir>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include "gui_test_util.hpp"
#include "pippy/gui/main_window.hpp"
#include "pippy/traces/live.hpp"

using namespace pippy;
using pippy::gui::LegendWidget;
using pippy::gui::MainWindow;
using pippy::gui::TimelineView;
using pippy::gui::panel;

namespace {
std::string rgb(QRgb c) { return QString::number(c, 16).toStdString(); }

// The colour most pixels of r have (a pattern's lines are the minority).
QRgb dominant(const QImage& img, const QRect& r) {
  std::map<QRgb, int> n;
  for (int y = r.top(); y <= r.bottom(); ++y)
    for (int x = r.left(); x <= r.right(); ++x)
      ++n[img.pixel(x, y)];
  return std::max_element(n.begin(), n.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
}

// A private settings folder, so recent files neither read nor touch the user's.
void private_settings(const QTemporaryDir& dir) {
  QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, dir.path());
  QSettings("pippy-cpp", "pippy-view").clear();
}

} // namespace

TEST_CASE("the legend's swatches are the colours the timeline draws", "[gui][window][legend]") {
  test::app();
  const trace t = test::schedule_trace("zb-h1", 2, 4); // F, I and W
  TimelineView view;
  view.add_trace(t, "zb-h1");
  const QImage timeline = view.render_image(QSize(1400, 300));
  LegendWidget legend;
  legend.resize(legend.sizeHint());
  const QImage key = legend.grab().toImage();
  REQUIRE(!legend.swatches().empty());
  // Each kind's swatch and a box of that kind (micro-batch 0) on the timeline: the same main colour, also
  // for I and W, whose boxes carry a pattern.
  for (const char* name : {"0F0", "0I0", "0W0"}) {
    const std::size_t i = test::find_event(t, name, 0);
    const auto box = view.event_rect(0, i);
    REQUIRE(box);
    const QString kind = QString::fromStdString(std::string(to_string(t.events[i].act.kind)));
    INFO(name);
    REQUIRE(legend.swatches().count(kind));
    CHECK(rgb(dominant(key, legend.swatches().at(kind).adjusted(2, 2, -2, -2))) ==
          rgb(dominant(timeline, box->toRect().adjusted(3, 3, -3, -3))));
  }
  for (const auto kind : {action_kind::forward, action_kind::full_backward, action_kind::optimizer_step}) {
    const action a{.stage = 0, .kind = kind, .microbatch = kind == action_kind::optimizer_step ? no_microbatch : 0};
    const QRect r = legend.swatches().at(QString::fromStdString(std::string(to_string(kind))));
    CHECK(rgb(key.pixel(r.center())) == rgb(TimelineView::action_color(a).rgba()));
  }
  for (int mb = 0; mb < 8; ++mb)
    CHECK(rgb(key.pixel(legend.swatches().at(QString("micro-batch %1").arg(mb)).center())) ==
          rgb(TimelineView::action_color({.stage = 0, .kind = action_kind::forward, .microbatch = mb}).rgba()));
  CHECK(rgb(key.pixel(legend.swatches().at("transfer").center())) == rgb(TimelineView::transfer_color().rgba()));
  CHECK(rgb(key.pixel(legend.swatches().at("bubble").center())) == rgb(TimelineView::bubble_color().rgba()));
  CHECK(rgb(key.pixel(legend.swatches().at("OOM marker").center())) == rgb(TimelineView::marker_color().rgba()));
  CHECK(rgb(key.pixel(legend.swatches().at("step marker").center())) == rgb(TimelineView::step_marker_color().rgba()));
}

TEST_CASE("a step marker is drawn in its own colour, an OOM marker in red", "[gui][window][markers]") {
  test::app();
  trace t;
  t.num_ranks = 1;
  t.events = {{0, parse_action("0F0"), 0, 10}, {0, parse_action("0B0"), 10, 30}, {0, parse_action("0F0"), 40, 50},
              {0, parse_action("0B0"), 50, 70}};
  t.markers = {{0, 35, "step 1", ""}, {0, 20, "OOM", "out of memory"}};
  TimelineView view;
  view.add_trace(t, "markers");
  const QImage img = view.render_image(QSize(900, 200));
  const double y = view.panels()[0]->lanes[0].y + TimelineView::lane_height / 2;
  auto x_of = [&](double us) { return int(TimelineView::left_margin + (us - view.view_start_us()) / view.us_per_pixel()); };
  CHECK(rgb(img.pixel(x_of(35), int(y))) == rgb(TimelineView::step_marker_color().rgba()));
  CHECK(rgb(img.pixel(x_of(20), int(y))) == rgb(TimelineView::marker_color().rgba()));
}

TEST_CASE("export through the menu writes the same PNG as pippy-view --export, and an SVG", "[gui][window][export]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const std::string in = test::temp_file("menu-export.json", to_chrome_json(test::schedule_trace("1f1b", 4, 8)));
  const QString menu_png = dir.filePath("menu.png"), cli_png = dir.filePath("cli.png");
  MainWindow w;
  w.resize(1100, 600);
  REQUIRE(w.open({QString::fromStdString(in)}));
  w.view().zoom(3, 300);
  const int width_before = w.view().width();
  const double start_before = w.view().view_start_us(), scale_before = w.view().us_per_pixel();
  QString asked_filter;
  w.ask_save = [&](const QString& filter) {
    asked_filter = filter;
    return filter.contains("PNG") ? menu_png : dir.filePath("menu"); // the SVG name without its extension
  };
  w.action("export_png")->trigger();
  CHECK(asked_filter.contains("*.png"));
  REQUIRE(std::system((std::string(PIPPY_VIEW_EXE) + " --export " + cli_png.toStdString() + " " + in).c_str()) == 0);
  const QImage a(menu_png), b(cli_png);
  REQUIRE(!a.isNull());
  REQUIRE(!b.isNull());
  CHECK(a.size() == b.size());
  CHECK(a == b);
  CHECK(w.status_text().contains("exported " + menu_png));
  // The view the user looks at keeps its size, zoom and position.
  CHECK(w.view().width() == width_before);
  CHECK(w.view().view_start_us() == start_before);
  CHECK(w.view().us_per_pixel() == scale_before);

  w.action("export_svg")->trigger();
  std::ifstream svg(dir.filePath("menu.svg").toStdString());
  const std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Catch::Contains("<svg"));
  CHECK_THAT(text, Catch::Contains("</svg>"));
  // --export writes SVG too, chosen by the name.
  const QString cli_svg = dir.filePath("cli.svg");
  REQUIRE(std::system((std::string(PIPPY_VIEW_EXE) + " --export " + cli_svg.toStdString() + " " + in).c_str()) == 0);
  CHECK(QFileInfo(cli_svg).size() > 1000);
  std::filesystem::remove(in);
}

TEST_CASE("the status bar shows the time under the cursor and the selected action", "[gui][window][status]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const trace t = test::schedule_trace("gpipe", 2, 2);
  const std::string in = test::temp_file("status.json", to_chrome_json(t));
  MainWindow w;
  w.resize(1000, 500);
  w.show();
  REQUIRE(w.open({QString::fromStdString(in)}));
  QApplication::processEvents();
  TimelineView& v = w.view();
  v.fit();
  const auto box = v.event_rect(0, 0);
  REQUIRE(box);
  const QPointF at = box->center();
  QMouseEvent move(QEvent::MouseMove, at, v.mapToGlobal(at), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
  QApplication::sendEvent(&v, &move);
  const auto time = v.time_at(at.x());
  REQUIRE(time);
  CHECK(*time >= t.events[0].start_us);
  CHECK(*time <= t.events[0].end_us);
  CHECK(w.status_text().startsWith("t = "));
  QMouseEvent press(QEvent::MouseButtonPress, at, v.mapToGlobal(at), Qt::LeftButton, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(&v, &press);
  QMouseEvent release(QEvent::MouseButtonRelease, at, v.mapToGlobal(at), Qt::LeftButton, Qt::NoButton, Qt::NoModifier);
  QApplication::sendEvent(&v, &release);
  const auto& e = t.events[0];
  CHECK(w.status_text().contains(QString("selected %1 on rank %2: ").arg(QString::fromStdString(to_string(e.act))).arg(e.rank)));
  // Off the plot (the lane labels): no time.
  QMouseEvent off(QEvent::MouseMove, QPointF(10, at.y()), v.mapToGlobal(QPointF(10, at.y())), Qt::NoButton, Qt::NoButton,
                  Qt::NoModifier);
  QApplication::sendEvent(&v, &off);
  CHECK_FALSE(w.status_text().contains("t = "));
  std::filesystem::remove(in);
}

TEST_CASE("the keys help lists every key and gesture and each menu shortcut", "[gui][window][keys]") {
  test::app();
  MainWindow w;
  const QString text = w.keys_text();
  for (const auto& [keys, what] : TimelineView::key_bindings()) {
    CHECK(text.contains(keys));
    CHECK(text.contains(what));
  }
  for (const char* name : {"open", "reload", "export_png", "export_svg", "fit", "zoom_step", "follow", "legend", "connect", "keys"}) {
    INFO(name);
    REQUIRE(w.action(name));
    REQUIRE_FALSE(w.action(name)->shortcut().isEmpty());
    CHECK(text.contains(w.action(name)->shortcut().toString(QKeySequence::NativeText)));
  }
  // The legend's action shows and hides its dock.
  w.show();
  w.action("legend")->trigger();
  CHECK_FALSE(w.legend().isVisible());
  w.action("legend")->trigger();
  CHECK(w.legend().isVisible());
}

TEST_CASE("recent files remember what was opened, and reload reads the files again", "[gui][window][files]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const std::string a = test::temp_file("recent-a.json", to_chrome_json(test::schedule_trace("gpipe", 4, 4)));
  const std::string b = test::temp_file("recent-b.json", to_chrome_json(test::schedule_trace("1f1b", 2, 4)));
  const QString qa = QFileInfo(QString::fromStdString(a)).absoluteFilePath(), qb = QFileInfo(QString::fromStdString(b)).absoluteFilePath();
  {
    MainWindow w;
    w.ask_open = [&] { return QStringList{qa}; };
    w.action("open")->trigger();
    REQUIRE(w.view().panels().size() == 1);
    CHECK(w.view().panels()[0]->t.num_ranks == 4);
    CHECK(w.windowTitle().contains(qa));
    // The file is rewritten by a new run: reload shows the new trace.
    std::ofstream(a) << to_chrome_json(test::schedule_trace("zb-h1", 3, 6));
    w.action("reload")->trigger();
    REQUIRE(w.view().panels().size() == 1);
    CHECK(w.view().panels()[0]->t.num_ranks == 3);
    CHECK(w.view().panels()[0]->error.empty());
    REQUIRE(w.open({qb, qa})); // predicted and measured: two panels
    CHECK(w.view().panels().size() == 2);
    CHECK(w.recent_files() == QStringList({qb, qa}));
  }
  // Another window (another session) starts with them; opening one again moves it first, no duplicates.
  MainWindow w2;
  CHECK(w2.recent_files() == QStringList({qb, qa}));
  REQUIRE(w2.open({qa}));
  CHECK(w2.recent_files() == QStringList({qa, qb}));
  // Opening more than two asks again instead.
  w2.ask_open = [&] { return QStringList{qa, qb, qa}; };
  w2.action("open")->trigger();
  CHECK(w2.view().panels().size() == 1);
  CHECK(w2.status_text().contains("one or two traces"));
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST_CASE("zoom to a step shows that step of a multi-step trace", "[gui][window][steps]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  // Three steps of 1F1B, 100 us apart.
  const trace one = test::schedule_trace("1f1b", 2, 4);
  const double span = compute_metrics(one).end_us;
  trace three = one;
  for (int k = 1; k < 3; ++k)
    for (auto e : one.events) {
      e.start_us += k * (span + 100);
      e.end_us += k * (span + 100);
      three.events.push_back(e);
    }
  REQUIRE(steps_in(three) == 3);
  const std::string in = test::temp_file("steps.json", to_chrome_json(three));
  MainWindow w;
  w.resize(1200, 500);
  REQUIRE(w.open({QString::fromStdString(in)}));
  w.view().fit();
  int asked = 0;
  w.ask_step = [&](int steps) {
    asked = steps;
    return 1;
  };
  w.action("zoom_step")->trigger();
  CHECK(asked == 3);
  const double lo = span + 100, hi = 2 * span + 100, margin = 0.02 * span;
  const double width = w.view().width() - TimelineView::left_margin - TimelineView::right_margin;
  CHECK(w.view().view_start_us() == Approx(lo - margin));
  CHECK(w.view().us_per_pixel() * width == Approx(hi - lo + 2 * margin));
  // One step: nothing to choose, and the window says so.
  const std::string single = test::temp_file("one-step.json", to_chrome_json(one));
  REQUIRE(w.open({QString::fromStdString(single)}));
  asked = 0;
  w.action("zoom_step")->trigger();
  CHECK(asked == 0);
  CHECK(w.status_text().contains("one step"));
  std::filesystem::remove(in);
  std::filesystem::remove(single);
}

TEST_CASE("connect to a live job from the Live menu follows a JSON-lines file", "[gui][window][live]") {
  test::app();
  const trace src = test::schedule_trace("gpipe", 2, 2);
  std::string first, rest; // the job writes its first action, then the others while the window follows
  for (std::size_t i = 0; i < src.events.size(); ++i)
    (i == 0 ? first : rest) += to_json_line(src.events[i]);
  const std::string path = test::temp_file("window-live.jsonl", first);
  MainWindow w;
  w.ask_live = [&] { return QString::fromStdString(path); };
  w.action("connect")->trigger();
  REQUIRE(test::wait_for([&] { return !w.view().panels().empty() && w.view().panels().back()->t.events.size() == 1; }));
  CHECK(w.action("follow")->isChecked());
  CHECK(w.view().following());
  CHECK_FALSE(w.summary_text().contains("F x4"));
  std::ofstream(path, std::ios::app) << rest;
  REQUIRE(test::wait_for([&] { return w.view().panels().back()->t.events.size() == src.events.size(); }));
  // The summary follows the job too (refreshed each second): all 4 F and 4 B of GPipe's 2 x 2.
  REQUIRE(test::wait_for([&] { return w.summary_text().contains("per kind:  F x4"); }));
  CHECK(w.summary_text().contains(" B x4 "));
  std::filesystem::remove(path);
}

TEST_CASE("two traces of one schedule get a comparison lane: green where they agree, red where one was shifted",
          "[gui][window][compare]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const trace predicted = test::schedule_trace("1f1b", 2, 4);
  trace measured = predicted;
  // The measurement starts elsewhere on the clock (as a real one does) and rank 1's last action, 1B3, ran
  // 3 units late (nothing follows it on its lane to overlap).
  for (auto& e : measured.events) {
    e.start_us += 5000;
    e.end_us += 5000;
  }
  const std::size_t late = test::find_event(measured, "1B3", 1);
  measured.events[late].start_us += 3000;
  measured.events[late].end_us += 3000;
  const std::string p = test::temp_file("cmp-predicted.json", to_chrome_json(predicted));
  const std::string m = test::temp_file("cmp-measured.json", to_chrome_json(measured));
  MainWindow w;
  w.resize(1400, 700);
  REQUIRE(w.open({QString::fromStdString(p), QString::fromStdString(m)}));
  TimelineView& v = w.view();
  REQUIRE(v.panels().size() == 3);
  const panel* cmp = v.comparison();
  REQUIRE(cmp);
  CHECK(cmp->t.events.size() == predicted.events.size()); // every compute action matched
  const QImage img = v.render_image(QSize(1400, v.fitting_height()));
  std::size_t green = 0, red = 0;
  for (std::size_t i = 0; i < cmp->t.events.size(); ++i) {
    const auto box = v.event_rect(2, i);
    REQUIRE(box);
    const QRgb c = img.pixel(QPoint(int(box->left() + 3), int(box->center().y()))); // beside the label
    const bool shifted = to_string(cmp->t.events[i].act) == "1B3";
    INFO(to_string(cmp->t.events[i].act) << " on rank " << cmp->t.events[i].rank);
    CHECK(rgb(c) == rgb(TimelineView::error_color(cmp->error_of[i]).rgba()));
    if (shifted) {
      CHECK(cmp->error_of[i] == Approx(1.5)); // 3 units late on a 2-unit backward
      CHECK(QColor(c).hue() == 0);
    } else {
      CHECK(cmp->error_of[i] < 1e-3); // equal but for the trace file's rounding of times
      CHECK(QColor(c).hue() >= 119);
    }
    (shifted ? red : green) += 1;
  }
  CHECK(red == 1);
  CHECK(green == cmp->t.events.size() - 1);
  CHECK(TimelineView::error_color(0) == QColor::fromHsv(120, 200, 210).toRgb());
  CHECK(TimelineView::error_color(TimelineView::error_scale) == QColor::fromHsv(0, 200, 210).toRgb());
  // Hovering or clicking the shifted action shows both times.
  const std::size_t i = test::find_event(cmp->t, "1B3", 1);
  const auto box = v.event_rect(2, i);
  REQUIRE(box);
  const QString tip = v.tooltip_at(box->center());
  CHECK(tip.contains("predicted: start"));
  CHECK(tip.contains("measured: start"));
  v.select_at(box->center());
  CHECK(v.selection_text().contains("1B3 on rank 1: predicted"));
  CHECK(v.selection_text().contains("error 150.0%"));
  // The summary dock: each trace's summary and trace diff's numbers.
  const QString text = w.summary_text();
  CHECK(text.contains("bubble fraction"));
  CHECK(text.contains(QString::fromStdString(format_diff(diff_traces(predicted, measured)))));
  // Traces of other sizes: no comparison, and no diff in the summary.
  const std::string other = test::temp_file("cmp-other.json", to_chrome_json(test::schedule_trace("gpipe", 2, 3)));
  REQUIRE(w.open({QString::fromStdString(p), QString::fromStdString(other)}));
  CHECK(v.panels().size() == 2);
  CHECK(v.comparison() == nullptr);
  CHECK_FALSE(w.summary_text().contains("trace diff"));
  for (const auto& f : {p, m, other})
    std::filesystem::remove(f);
}

TEST_CASE("the critical path is outlined on the timeline when asked", "[gui][window][critical]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const trace t = test::schedule_trace("gpipe", 3, 3);
  const std::string in = test::temp_file("critical.json", to_chrome_json(t));
  MainWindow w;
  REQUIRE(w.open({QString::fromStdString(in)}));
  TimelineView& v = w.view();
  const auto& path = v.panels()[0]->m.critical_path;
  REQUIRE(!path.empty());
  std::vector<char> on(t.events.size(), 0);
  for (auto i : path)
    on[i] = 1;
  auto edge_colours = [&](bool shown) {
    if (shown != w.action("critical_path")->isChecked())
      w.action("critical_path")->trigger();
    CHECK(v.critical_path_shown() == shown);
    const QImage img = v.render_image(QSize(1200, 400));
    std::size_t outlined_on = 0, outlined_off = 0;
    for (std::size_t i = 0; i < t.events.size(); ++i) {
      const auto box = v.event_rect(0, i);
      REQUIRE(box);
      const bool orange = img.pixel(QPoint(int(box->left() + 2), int(box->center().y()))) ==
                          TimelineView::critical_path_color().rgba();
      (on[i] ? outlined_on : outlined_off) += orange;
    }
    return std::pair{outlined_on, outlined_off};
  };
  CHECK(edge_colours(false) == std::pair<std::size_t, std::size_t>{0, 0});
  CHECK(edge_colours(true) == std::pair<std::size_t, std::size_t>{path.size(), 0});
  CHECK(w.summary_text().contains("critical path"));
  std::filesystem::remove(in);
}

TEST_CASE("a trace on the epoch's clock reads from 0 on the axis and in the status bar", "[gui][window][axis]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  trace t = test::schedule_trace("gpipe", 2, 2);
  for (auto& e : t.events) { // as a measured run or a torch.profiler file: microseconds since 1970
    e.start_us += 1.7e15;
    e.end_us += 1.7e15;
  }
  const std::string in = test::temp_file("epoch.json", to_chrome_json(t));
  MainWindow w;
  w.resize(1000, 500);
  REQUIRE(w.open({QString::fromStdString(in)}));
  TimelineView& v = w.view();
  v.render_image(QSize(1000, 300));
  CHECK(v.time_origin_us() == 1.7e15);
  const auto box = v.event_rect(0, 0);
  REQUIRE(box);
  QMouseEvent move(QEvent::MouseMove, box->center(), v.mapToGlobal(box->center()), Qt::NoButton, Qt::NoButton,
                   Qt::NoModifier);
  QApplication::sendEvent(&v, &move);
  const double from_start = *v.time_at(box->center().x()) - 1.7e15;
  CHECK(w.status_text().startsWith("t = " + TimelineView::time_text(from_start, 'f', 3)));
  CHECK(from_start < 2000); // within the first action (1000 us), not 1.7e15
  std::filesystem::remove(in);
}

TEST_CASE("a selection in the comparison goes when the comparison does", "[gui][window][compare]") {
  test::app();
  const trace t = test::schedule_trace("1f1b", 2, 4);
  TimelineView v;
  v.add_trace(t, "predicted");
  v.add_trace(t, "measured");
  v.render_image(QSize(1200, 500));
  REQUIRE(v.comparison());
  const auto box = v.event_rect(2, 0);
  REQUIRE(box);
  REQUIRE(v.select_at(box->center()));
  CHECK_FALSE(v.selection_text().isEmpty());
  v.add_trace(t, "a third"); // three traces: no comparison any more
  CHECK(v.comparison() == nullptr);
  CHECK(v.panels().size() == 3);
  CHECK(v.selection_text().isEmpty());
  CHECK_FALSE(v.render_image(QSize(1200, 600)).isNull());
  // A live source closed beside two traces: they are compared again, and nothing points at the gone panel.
  const std::string path = test::temp_file("sel-live.jsonl", to_json_line(t.events[0]));
  TimelineView w;
  w.add_trace(t, "predicted");
  REQUIRE(w.start_live(QString::fromStdString(path), 5));
  REQUIRE(test::wait_for([&] { return w.panels().back()->t.events.size() == 1; }));
  w.render_image(QSize(1200, 500));
  const auto live_box = w.event_rect(1, 0);
  REQUIRE(live_box);
  REQUIRE(w.select_at(live_box->center()));
  w.close_live();
  CHECK(w.selection_text().isEmpty());
  CHECK(w.panels().size() == 1);
  std::filesystem::remove(path);
}

TEST_CASE("the status bar forgets a selection that reload or open took away", "[gui][window][status]") {
  test::app();
  QTemporaryDir dir;
  private_settings(dir);
  const std::string in = test::temp_file("forget.json", to_chrome_json(test::schedule_trace("gpipe", 2, 2)));
  MainWindow w;
  w.resize(1000, 500);
  REQUIRE(w.open({QString::fromStdString(in)}));
  w.view().render_image(QSize(1000, 300));
  const auto box = w.view().event_rect(0, 0);
  REQUIRE(box);
  w.view().select_at(box->center());
  REQUIRE(w.status_text().contains("selected"));
  w.action("reload")->trigger();
  CHECK_FALSE(w.status_text().contains("selected"));
  std::filesystem::remove(in);
}
