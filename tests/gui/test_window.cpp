// Runs under a real X server (xvfb-run -a, see CMakeLists.txt): a shown window opens a trace, and a
// live session started by the test receives and draws what a publisher sends.
#include <catch2/catch.hpp>

#include <QGuiApplication>
#include <QMenuBar>
#include <QWindow>

#include "gui_test_util.hpp"
#ifdef PIPPY_EXE
#include "live_job.hpp"
#endif
#include "pippy/gui/main_window.hpp"
#include "pippy/gui/timeline_view.hpp"
#include "pippy/traces/live.hpp"

using namespace pippy;
using pippy::gui::TimelineView;

TEST_CASE("a real window opens a trace file and draws it", "[gui][xvfb]") {
  setenv("QT_QPA_PLATFORM", "xcb", 1);
  test::app();
  REQUIRE(QGuiApplication::platformName() == "xcb");
  const trace t = test::schedule_trace("gpipe", 4, 4);
  const std::string path = test::temp_file("window.json", to_chrome_json(t));
  TimelineView view;
  REQUIRE(view.open_files({QString::fromStdString(path)}));
  view.resize(1000, 400);
  view.show();
  REQUIRE(test::wait_for([&] { return view.windowHandle() && view.windowHandle()->isExposed(); }));
  view.repaint();
  REQUIRE(test::wait_for([&] { return view.drawn_actions() == t.events.size(); }));
  const QImage shot = view.grab().toImage();
  const auto r = view.event_rect(0, 0);
  REQUIRE(r);
  CHECK(QString::number(shot.pixel(int(r->left() + 3), int(r->top() + 3)), 16).toStdString() ==
        QString::number(TimelineView::action_color(t.events[0].act).rgba(), 16).toStdString());
  std::filesystem::remove(path);
}

TEST_CASE("the desktop window shows menus, the timeline and the legend in the same colours", "[gui][xvfb][window]") {
  setenv("QT_QPA_PLATFORM", "xcb", 1);
  test::app();
  REQUIRE(QGuiApplication::platformName() == "xcb");
  const trace t = test::schedule_trace("zb-h1", 2, 4);
  const std::string path = test::temp_file("desktop.json", to_chrome_json(t));
  pippy::gui::MainWindow w;
  REQUIRE(w.open({QString::fromStdString(path)}));
  w.resize(1300, 600);
  w.show();
  REQUIRE(test::wait_for([&] { return w.windowHandle() && w.windowHandle()->isExposed(); }));
  w.repaint();
  REQUIRE(test::wait_for([&] { return w.view().drawn_actions() == t.events.size(); }));
  QStringList menus;
  for (QAction* a : w.menuBar()->actions())
    menus << a->text().remove('&');
  CHECK(menus == QStringList({"File", "View", "Live", "Help"}));
  const QImage shot = w.grab().toImage();
  // The F swatch of the legend and the first forward box of the timeline, both as the window shows them.
  const QRect swatch = w.legend().swatches().at("F");
  const QPoint in_legend = w.legend().mapTo(&w, swatch.center());
  const auto box = w.view().event_rect(0, 0);
  REQUIRE(box);
  const QPoint in_view = w.view().mapTo(&w, QPoint(int(box->left() + 3), int(box->top() + 3)));
  CHECK(QString::number(shot.pixel(in_legend), 16).toStdString() ==
        QString::number(TimelineView::action_color(t.events[0].act).rgba(), 16).toStdString());
  CHECK(shot.pixel(in_legend) == shot.pixel(in_view));
  std::filesystem::remove(path);
}

TEST_CASE("a live window shows the events a publisher sends", "[gui][xvfb][live]") {
  test::app();
  live_publisher pub({.port = 0});
  TimelineView view;
  view.resize(1000, 400);
  view.show();
  REQUIRE(view.start_live(QString("127.0.0.1:%1").arg(pub.port()), 10));
  const trace src = test::schedule_trace("zb-h1", 4, 8);
  for (const auto& e : src.events)
    pub.publish(e);
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == src.events.size(); }));
  view.repaint();
  REQUIRE(test::wait_for([&] { return view.drawn_actions() == src.events.size(); }));
  CHECK(view.drawn_actions() == src.events.size());
}

#ifdef PIPPY_EXE
TEST_CASE("a live window follows a running `pippy sim --live` and draws every event it sent", "[gui][xvfb][live][sim]") {
  test::app();
  const std::string trace_path = test::temp_file("window-live-sim.json", "");
  QProcess job;
  const int port = test::start_sim_job(job, {"--schedule", "zb-h1", "--ranks", "4", "--microbatches", "8", "--latency-us", "0.5",
                                             "--pace", "0.002"},
                                       trace_path);
  TimelineView view;
  view.resize(1200, 800);
  view.show();
  REQUIRE(view.start_live(QString("127.0.0.1:%1").arg(port), 10));
  REQUIRE(test::sim_job_succeeded(job));
  const trace sent = load_chrome_trace(trace_path);
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == sent.events.size(); }));
  view.repaint();
  REQUIRE(test::wait_for([&] { return view.drawn_actions() == sent.events.size(); }));
  CHECK(view.drawn_actions() == sent.events.size());
  std::filesystem::remove(trace_path);
}
#endif
