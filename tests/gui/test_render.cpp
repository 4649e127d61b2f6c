#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QKeyEvent>
#include <QMouseEvent>
#include <QWheelEvent>
#include <QPainter>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include "../support/hung_listener.hpp"
#include "../support/loopback.hpp"
#include "../support/watchdog.hpp"
#include "gui_test_util.hpp"
#include "pippy/gui/timeline_view.hpp"
#include "pippy/traces/live.hpp"

using namespace pippy;
using pippy::gui::TimelineView;

namespace {
// Colours compared as 0xAARRGGBB text, so a failure prints them.
std::string pixel(const QImage& img, QPointF p) { return QString::number(img.pixel(int(p.x()), int(p.y())), 16).toStdString(); }
std::string rgb(const QColor& c) { return QString::number(c.rgba(), 16).toStdString(); }
} // namespace

TEST_CASE("offscreen render of 4-stage GPipe: bubbles are bubble-coloured, boxes are not", "[gui][render]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("gpipe", 4, 4), "gpipe");
  const QImage img = view.render_image(QSize(1200, 400));
  REQUIRE(img.width() == 1200);
  const auto& pn = *view.panels()[0];
  REQUIRE(pn.lanes.size() == 4);
  const auto& m = pn.m;
  REQUIRE(m.gaps.size() == 9); // warm-up, wait, drain per rank; rank 0 has no warm-up or drain, rank 3 no wait

  std::size_t bubble_checks = 0;
  for (const auto& g : m.gaps) {
    const auto& l = pn.lanes[static_cast<std::size_t>(g.rank)];
    const double x0 = view.us_per_pixel() > 0 ? TimelineView::left_margin + (g.start_us - view.view_start_us()) / view.us_per_pixel() : 0;
    const double x1 = TimelineView::left_margin + (g.end_us - view.view_start_us()) / view.us_per_pixel();
    REQUIRE(x1 - x0 > 10);
    for (double f : {0.2, 0.5, 0.8}) {
      const QPointF p(x0 + f * (x1 - x0), l.y + l.height / 2);
      INFO("gap " << g.describe() << " at " << p.x() << "," << p.y());
      CHECK(pixel(img, p) == rgb(TimelineView::bubble_color()));
      ++bubble_checks;
    }
  }
  CHECK(bubble_checks == 27);
  for (std::size_t i = 0; i < pn.t.events.size(); ++i) {
    const auto r = view.event_rect(0, i);
    REQUIRE(r);
    CHECK(r->width() > 20);
    // Off the centre label, inside the outline: the action's own colour, never the bubble colour.
    const QPointF p(r->left() + 3, r->top() + 3);
    CHECK(pixel(img, p) != rgb(TimelineView::bubble_color()));
    CHECK(pixel(img, p) == rgb(TimelineView::action_color(pn.t.events[i].act)));
    CHECK(pixel(img, r->center()) != rgb(TimelineView::bubble_color()));
  }
  CHECK(view.drawn_actions() == 32);
  // Forward and backward of one micro-batch are told apart; micro-batches differ in colour.
  CHECK(TimelineView::action_color(parse_action("0F0")) != TimelineView::action_color(parse_action("0B0")));
  CHECK(TimelineView::action_color(parse_action("0F0")) != TimelineView::action_color(parse_action("0F1")));
  CHECK(TimelineView::action_color(parse_action("0I0")) != TimelineView::action_color(parse_action("0W0")));
}

TEST_CASE("the bubbles of a hand-made trace are drawn where and as large as worked out by hand", "[gui][render]") {
  test::app();
  // Two ranks, one micro-batch, times in us:  rank 0: F [0,1000]              B [4000,6000]
  //                                           rank 1:      F [1000,2000] B [2000,4000]
  // By hand: the step is 0..6000; rank 0 idles 1000..4000 (waiting for rank 1's gradient), rank 1 idles
  // 0..1000 (waiting for the activation) and 4000..6000 (drain): 6000 of 12000 rank-us, bubble 0.5.
  trace t;
  t.run = "hand-made";
  t.num_ranks = 2;
  auto ev = [](int rank, const char* a, double s, double e) {
    return trace_event{.rank = rank, .act = parse_action(a), .start_us = s, .end_us = e};
  };
  t.events = {ev(0, "0F0", 0, 1000), ev(1, "1F0", 1000, 2000), ev(1, "1B0", 2000, 4000), ev(0, "0B0", 4000, 6000)};
  struct span {
    int rank;
    double start_us, end_us;
  };
  const std::vector<span> bubbles = {{0, 1000, 4000}, {1, 0, 1000}, {1, 4000, 6000}};

  TimelineView view;
  view.add_trace(t, "hand-made");
  const QImage img = view.render_image(QSize(1200, 400));
  const auto& pn = *view.panels()[0];
  CHECK(pn.m.step_time_us == Approx(6000));
  CHECK(pn.m.bubble_fraction == Approx(0.5));
  REQUIRE(pn.m.gaps.size() == bubbles.size());
  for (std::size_t k = 0; k < bubbles.size(); ++k) {
    INFO("gap " << pn.m.gaps[k].describe());
    CHECK(pn.m.gaps[k].rank == bubbles[k].rank);
    CHECK(pn.m.gaps[k].start_us == Approx(bubbles[k].start_us));
    CHECK(pn.m.gaps[k].end_us == Approx(bubbles[k].end_us));
  }
  REQUIRE(pn.lanes.size() == 2);
  auto x_of = [&](double us) { return TimelineView::left_margin + (us - view.view_start_us()) / view.us_per_pixel(); };
  REQUIRE(x_of(6000) - x_of(0) > 600); // fitted: 0.1 of the shortest span is several pixels
  for (const auto& b : bubbles) {
    const auto& l = pn.lanes[static_cast<std::size_t>(b.rank)];
    REQUIRE(l.rank == b.rank);
    for (double f : {0.1, 0.5, 0.9}) {
      const QPointF p(x_of(b.start_us + f * (b.end_us - b.start_us)), l.y + l.height / 2);
      INFO("rank " << b.rank << " bubble " << b.start_us << ".." << b.end_us << " at " << p.x() << "," << p.y());
      CHECK(pixel(img, p) == rgb(TimelineView::bubble_color()));
    }
  }
  // Inside each box, near both of its ends: the action's own colour, never a bubble's.
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    const auto& e = t.events[i];
    const auto r = view.event_rect(0, i);
    REQUIRE(r);
    for (double f : {0.1, 0.9}) {
      const QPointF p(x_of(e.start_us + f * (e.end_us - e.start_us)), r->top() + 3);
      INFO(to_string(e.act) << " at " << p.x() << "," << p.y());
      CHECK(pixel(img, p) == rgb(TimelineView::action_color(e.act)));
    }
  }
}

TEST_CASE("two traces share one time axis, the second drawn below the first", "[gui][render]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("gpipe", 4, 4), "predicted");
  view.add_trace(test::schedule_trace("1f1b", 4, 4), "measured");
  const QImage img = view.render_image(QSize(1200, 500));
  const auto& a = *view.panels()[0];
  const auto& b = *view.panels()[1];
  CHECK(b.top >= a.top + a.height);
  for (const auto& la : a.lanes)
    for (const auto& lb : b.lanes)
      CHECK(lb.y > la.y + la.height);
  // The same action at the same time lands at the same x in both.
  const auto ra = view.event_rect(0, test::find_event(a.t, "1F0", 1));
  const auto rb = view.event_rect(1, test::find_event(b.t, "1F0", 1));
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->left() == Approx(rb->left()));
  CHECK(rb->top() > ra->bottom());
  // Both have the same 32 actions (one schedule's step, as trace diff sees it): the comparison block below
  // them draws those 32 again.
  REQUIRE(view.comparison());
  CHECK(view.drawn_actions() == 64 + 32);
  // 1F1B's rank 0 waits for 1B0 at a different time than GPipe's: its box sits elsewhere.
  const auto ga = view.event_rect(0, test::find_event(a.t, "0B0", 0));
  const auto gb = view.event_rect(1, test::find_event(b.t, "0B0", 0));
  CHECK(ga->left() > gb->left());
}

TEST_CASE("a rank holding several stages gets one lane per stage", "[gui][render]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("interleaved-1f1b", 2, 4, 2), "interleaved");
  view.render_image(QSize(1000, 300));
  const auto& pn = *view.panels()[0];
  REQUIRE(pn.lanes.size() == 4);
  CHECK(pn.lanes[0].rank == 0);
  CHECK(pn.lanes[0].stage == 0);
  CHECK(pn.lanes[1].stage == 2);
  CHECK(pn.lanes[2].rank == 1);
  for (const auto& l : pn.lanes)
    for (auto i : l.events)
      CHECK(pn.t.events[i].act.stage == l.stage);
}

TEST_CASE("communication sub-lane and memory curve are laid out per rank", "[gui][render]") {
  test::app();
  trace t;
  t.num_ranks = 2;
  t.events = {{0, parse_action("0F0"), 0, 10}, {0, parse_action("0SEND_F0"), 10, 12, 4096, 1},
              {1, parse_action("1F0"), 12, 20}, {1, parse_action("1B0"), 20, 30}, {0, parse_action("0B0"), 32, 50}};
  t.memory = {{0, 0, 1000}, {0, 10, 3000}, {0, 50, 1000}, {1, 12, 2000}, {1, 30, 500}};
  TimelineView view;
  view.add_trace(t, "hand-made");
  const QImage img = view.render_image(QSize(900, 300));
  const auto& pn = *view.panels()[0];
  REQUIRE(pn.lanes.size() == 3);
  CHECK(pn.lanes[1].comm);
  CHECK(pn.lanes[1].rank == 0);
  CHECK(pn.memory_y[0] > pn.lanes[1].y);
  CHECK(pn.memory_y[1] > pn.lanes[2].y);
  const auto send = view.event_rect(0, 1);
  REQUIRE(send);
  CHECK(send->top() == Approx(pn.lanes[1].y + 1));
  CHECK(pixel(img, QPointF(send->center().x(), send->top() + 1)) == rgb(QColor(110, 110, 110)));
  // The memory curve of rank 0 at its peak (t in 10..50) is drawn near the strip's top.
  const double x = TimelineView::left_margin + (30 - view.view_start_us()) / view.us_per_pixel();
  bool blue = false;
  for (int y = int(pn.memory_y[0]); y < int(pn.memory_y[0]) + 6; ++y)
    blue = blue || img.pixelColor(int(x), y).blue() > 150 && img.pixelColor(int(x), y).red() < 120;
  CHECK(blue);
  CHECK(view.tooltip_at(send->center()).contains("bytes 4096"));
}

TEST_CASE("a stage's REDUCE_GRAD is drawn on its rank's comm sub-lane in its own colour, not as a transfer", "[gui][render]") {
  test::app();
  trace t;
  t.num_ranks = 2;
  t.events = {{0, parse_action("0F0"), 0, 10}, {0, parse_action("0SEND_F0"), 10, 12, 4096, 1},
              {1, parse_action("1F0"), 12, 20}, {1, parse_action("1B0"), 20, 30}, {0, parse_action("0B0"), 32, 50},
              {0, parse_action("0REDUCE_GRAD"), 50, 70, 8192, -1}, {0, parse_action("0U"), 70, 75}};
  TimelineView view;
  view.add_trace(t, "pp x dp");
  const QImage img = view.render_image(QSize(900, 300));
  const auto& pn = *view.panels()[0];
  REQUIRE(pn.lanes.size() == 3); // rank 0's compute and comm lanes, rank 1's compute lane
  const auto sum = view.event_rect(0, 5);
  REQUIRE(sum);
  CHECK(sum->top() == Approx(pn.lanes[1].y + 1));
  CHECK(pixel(img, QPointF(sum->center().x(), sum->top() + 1)) == rgb(QColor(150, 90, 190)));
  CHECK(rgb(TimelineView::action_color(pn.t.events[5].act)) != rgb(TimelineView::transfer_color()));
  const auto send = view.event_rect(0, 1);
  REQUIRE(send);
  CHECK(pixel(img, QPointF(send->center().x(), send->top() + 1)) == rgb(TimelineView::transfer_color()));
  CHECK(view.tooltip_at(sum->center()).contains("0REDUCE_GRAD"));
  CHECK(view.tooltip_at(sum->center()).contains("bytes 8192"));
}

TEST_CASE("a marker (the simulator's OOM) is a red tick on its rank's lanes with the detail in the tooltip", "[gui][render][markers]") {
  test::app();
  trace t;
  t.num_ranks = 2;
  t.events = {{0, parse_action("0F0"), 0, 10}, {0, parse_action("0SEND_F0"), 10, 12, 4096, 1},
              {1, parse_action("1F0"), 12, 20}, {1, parse_action("1B0"), 20, 30}, {0, parse_action("0B0"), 32, 50}};
  t.markers = {{1, 25, "OOM", "out of memory on rank 1 at 1F1"}};
  TimelineView view;
  view.add_trace(t, "oom");
  const QImage img = view.render_image(QSize(900, 300));
  const auto& pn = *view.panels()[0];
  const double x = TimelineView::left_margin + (25 - view.view_start_us()) / view.us_per_pixel();
  const auto b = view.event_rect(0, 3); // 1B0, 20..30 on rank 1: the tick is drawn over it
  REQUIRE(b);
  CHECK(pixel(img, QPointF(x, b->center().y())) == rgb(TimelineView::marker_color()));
  CHECK(pixel(img, QPointF(x + 10, b->center().y())) == rgb(TimelineView::action_color(pn.t.events[3].act)));
  // Not on rank 0's lanes.
  for (const auto& l : pn.lanes)
    if (l.rank == 0)
      CHECK(pixel(img, QPointF(x, l.y + l.height / 2)) != rgb(TimelineView::marker_color()));
  const QString tip = view.tooltip_at(QPointF(x, b->center().y()));
  CHECK(tip.contains("OOM on rank 1"));
  CHECK(tip.contains("out of memory on rank 1 at 1F1"));
  CHECK(view.tooltip_at(QPointF(x + 10, b->center().y())).contains("1B0")); // beside it: the action
}

TEST_CASE("tooltip, click highlight with dependencies, zoom and pan", "[gui][interaction]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("gpipe", 4, 4), "gpipe");
  view.render_image(QSize(1200, 400));
  const auto& pn = *view.panels()[0];
  const auto i = test::find_event(pn.t, "2B1", 2);
  const auto r = view.event_rect(0, i);
  REQUIRE(r);
  const QString tip = view.tooltip_at(r->center());
  CHECK(tip.contains("stage 2"));
  CHECK(tip.contains("micro-batch 1"));
  CHECK(tip.contains("start 11 ms"));
  CHECK(tip.contains("duration 2 ms"));
  CHECK(view.select_at(r->center()) == 1);
  auto deps = view.highlighted_dependencies();
  std::vector<std::string> names;
  for (auto d : deps)
    names.push_back(to_string(pn.t.events[d].act));
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"2F1", "3B1"}); // its activation and the gradient from stage 3
  CHECK_FALSE(view.select_at(QPointF(5, 5)).has_value());

  const double upp = view.us_per_pixel();
  view.zoom(2.0, 600);
  CHECK(view.us_per_pixel() == Approx(upp / 2));
  QKeyEvent plus(QEvent::KeyPress, Qt::Key_Plus, Qt::NoModifier, "+");
  QApplication::sendEvent(&view, &plus);
  CHECK(view.us_per_pixel() == Approx(upp / 3));
  const double t0 = view.view_start_us();
  QKeyEvent right(QEvent::KeyPress, Qt::Key_Right, Qt::NoModifier);
  QApplication::sendEvent(&view, &right);
  CHECK(view.view_start_us() == Approx(t0 + 80 * view.us_per_pixel()));
  QKeyEvent f(QEvent::KeyPress, Qt::Key_F, Qt::NoModifier, "f");
  QApplication::sendEvent(&view, &f);
  CHECK(view.us_per_pixel() == Approx(upp));
  CHECK(view.view_start_us() == 0);
}

TEST_CASE("wheel zooms around the cursor, shift+wheel and drag pan", "[gui][interaction]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("gpipe", 4, 4), "gpipe");
  view.render_image(QSize(1200, 400));
  const double upp = view.us_per_pixel();
  const QPointF at(500, 100);
  const double t_at = view.view_start_us() + (at.x() - TimelineView::left_margin) * upp;
  QWheelEvent wheel(at, at, QPoint(), QPoint(0, 120), Qt::NoButton, Qt::NoModifier, Qt::NoScrollPhase, false);
  QApplication::sendEvent(&view, &wheel);
  CHECK(view.us_per_pixel() == Approx(upp / 1.25));
  // The time under the cursor stays under the cursor.
  CHECK(view.view_start_us() + (at.x() - TimelineView::left_margin) * view.us_per_pixel() == Approx(t_at));
  const double t0 = view.view_start_us();
  QWheelEvent shift(at, at, QPoint(), QPoint(0, -120), Qt::NoButton, Qt::ShiftModifier, Qt::NoScrollPhase, false);
  QApplication::sendEvent(&view, &shift);
  CHECK(view.view_start_us() == Approx(t0 + 60 * view.us_per_pixel()));
  const double t1 = view.view_start_us();
  QMouseEvent press(QEvent::MouseButtonPress, QPointF(600, 5), QPointF(600, 5), Qt::LeftButton, Qt::LeftButton, Qt::NoModifier);
  QMouseEvent move(QEvent::MouseMove, QPointF(500, 5), QPointF(500, 5), Qt::NoButton, Qt::LeftButton, Qt::NoModifier);
  QMouseEvent release(QEvent::MouseButtonRelease, QPointF(500, 5), QPointF(500, 5), Qt::LeftButton, Qt::NoButton, Qt::NoModifier);
  QApplication::sendEvent(&view, &press);
  QApplication::sendEvent(&view, &move);
  QApplication::sendEvent(&view, &release);
  CHECK(view.view_start_us() == Approx(t1 + 100 * view.us_per_pixel())); // dragged left: later times
}

TEST_CASE("only visible actions are drawn", "[gui][render]") {
  test::app();
  TimelineView view;
  view.add_trace(test::schedule_trace("1f1b", 4, 2000), "big");
  view.render_image(QSize(1000, 300));
  CHECK(view.drawn_actions() == 16000);
  view.zoom(100, TimelineView::left_margin);
  QImage img(1000, 300, QImage::Format_ARGB32);
  QPainter p(&img);
  view.paint(p, QRect(0, 0, 1000, 300));
  CHECK(view.drawn_actions() > 0);
  CHECK(view.drawn_actions() < 16000 / 50);
}

TEST_CASE("bad files open with an error message, never a crash", "[gui][errors]") {
  test::app();
  struct bad {
    std::string name, content, expect;
  };
  const std::vector<bad> cases = {
      {"truncated.json", "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0,\"ts\":0,", "not valid JSON"},
      {"types.json", "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":\"zero\",\"ts\":0,\"dur\":1}]}", "pid"},
      {"dur.json", "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0,\"ts\":\"soon\",\"dur\":1}]}", "\"ts\""},
      {"kind.json", "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0Q0\",\"pid\":0,\"ts\":0,\"dur\":1}]}", "0Q0"},
      {"empty.json", "", "not valid JSON"},
      {"noevents.json", "{\"traceEvents\":[]}", "no pipeline actions"},
      {"notobject.json", "42", "traceEvents"},
      {"lines.jsonl", "{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":0,\"ts\":0,\"dur\":1}\n{\"ph\":", "line 2"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    TimelineView view;
    const std::string path = test::temp_file(c.name, c.content);
    CHECK_FALSE(view.open_files({QString::fromStdString(path)}));
    REQUIRE(view.errors().size() == 1);
    CHECK(view.errors()[0].contains(QString::fromStdString(path)));
    CHECK(view.errors()[0].contains(QString::fromStdString(c.expect)));
    const QImage img = view.render_image(QSize(800, 200)); // draws the error, does not crash
    bool red = false;
    for (int y = 0; y < img.height() && !red; ++y)
      for (int x = 0; x < img.width() && !red; ++x)
        red = img.pixelColor(x, y).red() > 200 && img.pixelColor(x, y).green() < 60;
    CHECK(red);
    std::filesystem::remove(path);
  }
  TimelineView view;
  CHECK_FALSE(view.open_files({"/nonexistent/trace.json"}));
  CHECK(view.errors()[0].contains("cannot open"));
  CHECK_FALSE(view.start_live("/nonexistent/live.jsonl"));
}

TEST_CASE("a live session shows every event a publisher sends and follows the head", "[gui][live]") {
  test::app();
  live_publisher pub({.port = 0});
  TimelineView view;
  view.resize(1200, 400);
  REQUIRE(view.start_live(QString("127.0.0.1:%1").arg(pub.port()), 5));
  const trace src = test::schedule_trace("1f1b", 4, 8);
  std::vector<trace_event> by_end = src.events;
  std::stable_sort(by_end.begin(), by_end.end(), [](auto& a, auto& b) { return a.end_us < b.end_us; });
  std::size_t sent = 0;
  for (const auto& e : by_end) { // as actions finish
    pub.publish(e);
    ++sent;
    if (sent == by_end.size() / 2) {
      REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == sent; }));
      CHECK(view.following());
    }
  }
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == sent; }));
  QImage img(1200, 400, QImage::Format_ARGB32);
  QPainter p(&img);
  view.paint(p, QRect(0, 0, 1200, 400));
  CHECK(view.drawn_actions() == sent);
  // 1F1B with uniform costs (F = 1, B = 2 units of 1000 us, no transfers): every rank idles (R-1)(F+B)
  // of the (M+R-1)(F+B) step, so the bubble is (R-1)/(M+R-1) = 3/11, 9000 us per rank.
  const auto& m = view.panels()[0]->m;
  CHECK(m.step_time_us == Approx(33000));
  CHECK(m.bubble_fraction == Approx(3.0 / 11));
  std::vector<double> idle(4, 0.0);
  for (const auto& g : m.gaps)
    idle[static_cast<std::size_t>(g.rank)] += g.duration_us();
  CHECK(idle == std::vector<double>(4, 9000.0));
  view.pan_pixels(200); // scrolled back: stop following
  CHECK_FALSE(view.following());
  QKeyEvent end(QEvent::KeyPress, Qt::Key_End, Qt::NoModifier);
  QApplication::sendEvent(&view, &end);
  CHECK(view.following());
  CHECK(view.errors().isEmpty());
}

TEST_CASE("a live viewer started before the job connects once the job listens, and shows when the stream ends",
          "[gui][live]") {
  test::app();
  // The job's port, held from the start: bound to port 0 (the kernel picks a free one) but not listening
  // yet, so connects are refused as for a job that has not started, and nothing else can take the port.
  const auto [fd, port] = test::bind_loopback(SOCK_NONBLOCK);
  const QString spec = QString("127.0.0.1:%1").arg(port);
  TimelineView view;
  view.resize(1000, 300);
  CHECK_FALSE(view.start_live(spec, 10));
  REQUIRE(view.errors().size() == 1);
  CHECK(view.errors()[0].contains("refused"));
  CHECK(view.errors()[0].contains("retrying"));
  REQUIRE(::listen(fd, 16) == 0); // the job starts serving on its port
  int job = -1;                   // the job's end of the viewer's connection
  REQUIRE(test::wait_for([&] {
    if (job < 0)
      job = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    return job >= 0 && view.live_status() == "connected to " + spec;
  }));
  CHECK(view.errors().isEmpty());
  const trace src = test::schedule_trace("gpipe", 2, 3);
  std::string lines; // what live_publisher sends: one JSON line per event
  for (const auto& e : src.events)
    lines += to_json_line(e);
  REQUIRE(::send(job, lines.data(), lines.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(lines.size()));
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == src.events.size(); }));
  CHECK(view.panels()[0]->t.events == src.events);
  ::close(job); // the job ends its stream
  REQUIRE(test::wait_for([&] { return view.live_status() == spec + " (ended)"; }));
  CHECK(view.panels()[0]->title == "live (ended): " + spec.toStdString());
  CHECK(view.panels()[0]->t.events.size() == src.events.size()); // kept after the end
  CHECK(view.errors().isEmpty());
  ::close(fd);
}

using pippy::test::hung_listener;

TEST_CASE("a live viewer whose peer does not answer stays responsive and shows it is connecting", "[gui][live]") {
  test::app();
  hung_listener l; // answers nobody until the test accepts
  const QString spec = QString("127.0.0.1:%1").arg(l.port);
  TimelineView view;
  view.resize(1000, 300);
  {
    // Hang guard: answering the peer lets a GUI thread that wrongly waits for it go on (and the checks fail).
    pippy::test::watchdog wd(std::chrono::seconds(30), [&] { l.accept_all(); });
    CHECK(view.start_live(spec, 5)); // returned with the connect under way: the peer has not answered
    CHECK(view.live_status() == "connecting to " + spec + "...");
    CHECK(view.windowTitle().contains("connecting to " + spec));
    CHECK(view.panels()[0]->title.find("connecting to") != std::string::npos);
    CHECK(view.errors().isEmpty());
    for (int k = 0; k < 200; ++k) { // the GUI thread keeps serving its events while the peer stays silent
      view.poll_live();
      QApplication::processEvents(QEventLoop::AllEvents);
      REQUIRE(view.live_status() == "connecting to " + spec + "...");
    }
    CHECK_FALSE(wd.done()); // nothing had to be answered for the calls to return
    CHECK(l.accepted.empty());
  }
  // The job gets round to accepting: the pending connect completes and the stream is read.
  REQUIRE(test::wait_for([&] {
    l.accept_all();
    return view.live_status() == "connected to " + spec;
  }));
  const trace src = test::schedule_trace("gpipe", 2, 3);
  std::string lines;
  for (const auto& e : src.events)
    lines += to_json_line(e);
  for (int c : l.accepted) // the fillers never read; only the viewer's socket matters
    CHECK(::send(c, lines.data(), lines.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(lines.size()));
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == src.events.size(); }));
  CHECK(view.errors().isEmpty());
}

TEST_CASE("a refused live connect is retried with a bounded back-off and says so", "[gui][live]") {
  test::app();
  const auto [fd, port] = test::bind_loopback(); // bound, never listening: refuses
  TimelineView view;
  QElapsedTimer clock; // started before the first attempt: each retry comes at least its delays after it
  clock.start();
  CHECK_FALSE(view.start_live(QString("127.0.0.1:%1").arg(port), 5));
  REQUIRE(view.errors().size() == 1);
  CHECK(view.errors()[0].contains("refused"));
  CHECK(view.errors()[0].contains("retrying in 0.25 s"));
  CHECK(view.live_status() == view.errors()[0]);
  // The delay doubles from 0.25 s up to 2 s. Elapsed time is only checked from below (never earlier than
  // the delays add up to), which no load can break.
  double due_ms = 0;
  for (auto [next, delay_ms] : {std::pair{"retrying in 0.5 s", 250}, {"retrying in 1 s", 500}, {"retrying in 2 s", 1000}}) {
    INFO(next);
    REQUIRE(test::wait_for([&] { return view.errors().size() == 1 && view.errors()[0].contains(next); }));
    due_ms += delay_ms;
    CHECK(clock.nsecsElapsed() >= due_ms * 1e6);
    CHECK(view.live_status() == view.errors()[0]);
  }
  CHECK(view.errors()[0].contains("refused"));
  // Bounded: the attempt 2 s later says 2 s again. Past it (2.5 s without a change of the message), a
  // back-off that kept doubling would say 4 s. This part can only miss a bug on a slow run, never fail a
  // correct one.
  QElapsedTimer since;
  since.start();
  test::wait_for([&] { return since.elapsed() > TimelineView::max_retry_delay_ms + 500; }, 60000);
  CHECK(view.errors()[0].contains("retrying in 2 s"));
  ::close(fd);
}

TEST_CASE("live events on ranks and stages not seen before get their lanes, each event once", "[gui][live]") {
  test::app();
  live_publisher pub({.port = 0});
  TimelineView view;
  view.resize(1000, 300);
  REQUIRE(view.start_live(QString("127.0.0.1:%1").arg(pub.port()), 5));
  const trace src = test::schedule_trace("interleaved-1f1b", 2, 4, 2);
  std::vector<trace_event> by_end = src.events;
  std::stable_sort(by_end.begin(), by_end.end(), [](auto& a, auto& b) { return a.end_us < b.end_us; });
  std::size_t sent = 0;
  for (const auto& e : by_end) { // one at a time: lanes appear as ranks and stages do
    pub.publish(e);
    ++sent;
    REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == sent; }));
  }
  const auto& pn = *view.panels()[0];
  CHECK(pn.lanes.size() == 4);
  std::size_t in_lanes = 0;
  for (const auto& l : pn.lanes) {
    in_lanes += l.events.size();
    for (std::size_t k = 1; k < l.events.size(); ++k)
      CHECK(pn.t.events[l.events[k - 1]].start_us <= pn.t.events[l.events[k]].start_us);
  }
  CHECK(in_lanes == sent);
  QImage img(1000, 300, QImage::Format_ARGB32);
  QPainter p(&img);
  view.paint(p, QRect(0, 0, 1000, 300));
  CHECK(view.drawn_actions() == sent);
}

TEST_CASE("a live JSON-lines file is followed as it grows", "[gui][live]") {
  test::app();
  const std::string path = test::temp_file("grow.jsonl", "");
  TimelineView view;
  view.resize(1000, 300);
  REQUIRE(view.start_live(QString::fromStdString(path), 5));
  const trace src = test::schedule_trace("gpipe", 2, 3);
  {
    live_publisher pub({.path = path});
    for (const auto& e : src.events)
      pub.publish(e);
  }
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == src.events.size(); }));
  std::filesystem::remove(path);
}

TEST_CASE("a live JSON-lines file that does not exist yet is waited for, then followed", "[gui][live]") {
  test::app();
  const std::string path = test::temp_file("later.jsonl", "");
  std::filesystem::remove(path);
  TimelineView view;
  view.resize(1000, 300);
  CHECK_FALSE(view.start_live(QString::fromStdString(path), 5)); // not open yet, but retried
  REQUIRE(view.panels().size() == 1);
  CHECK_THAT(view.panels()[0]->error, Catch::Contains("waiting for the file to appear"));
  const trace src = test::schedule_trace("gpipe", 2, 3);
  {
    live_publisher pub({.path = path});
    for (const auto& e : src.events)
      pub.publish(e);
  }
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == src.events.size(); }));
  CHECK(view.panels()[0]->error.empty());
  std::filesystem::remove(path);
}

TEST_CASE("pippy-view --export writes a PNG of the given size, and fails cleanly on bad input", "[gui][export]") {
  test::app();
  const trace t = test::schedule_trace("gpipe", 4, 4);
  const std::string in = test::temp_file("export-in.json", to_chrome_json(t));
  const std::string out = (std::filesystem::temp_directory_path() / ("pippy-export-" + std::to_string(::getpid()) + ".png")).string();
  const std::string cmd = std::string(PIPPY_VIEW_EXE) + " --export " + out + " --width 900 --height 700 " + in + " " + in;
  REQUIRE(std::system(cmd.c_str()) == 0);
  QImage img(QString::fromStdString(out));
  REQUIRE(!img.isNull());
  CHECK(img.width() == 900);
  CHECK(img.height() == 700);
  // A height that would cut lanes off grows to fit them all, and says so (issue 18 item 6).
  const std::string said = (std::filesystem::temp_directory_path() / ("pippy-export-" + std::to_string(::getpid()) + ".said")).string();
  REQUIRE(std::system((std::string(PIPPY_VIEW_EXE) + " --export " + out + " --width 900 --height 150 " + in + " " + in +
                       " 2>" + said).c_str()) == 0);
  {
    TimelineView fit;
    REQUIRE(fit.open_files({QString::fromStdString(in), QString::fromStdString(in)}));
    const int fits = fit.fitting_height();
    CHECK(fits > 300);
    CHECK(QImage(QString::fromStdString(out)).height() == fits);
    std::ifstream s(said);
    const std::string text((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
    CHECK_THAT(text, Catch::Contains("pippy-view: --height 150 would cut lanes off (all of them need " +
                                     std::to_string(fits) + " px): the image is " + std::to_string(fits) + " px high\n"));
  }
  std::filesystem::remove(said);
  std::size_t bubble = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x)
      bubble += img.pixel(x, y) == TimelineView::bubble_color().rgba();
  CHECK(bubble > 1000);
  const std::string bad = test::temp_file("export-bad.json", "{\"traceEvents\":[{\"ph\":\"X\"");
  const std::string err = (std::filesystem::temp_directory_path() / ("pippy-export-" + std::to_string(::getpid()) + ".err")).string();
  const std::string cmd2 = std::string(PIPPY_VIEW_EXE) + " --export " + out + " " + bad + " 2>" + err;
  CHECK(std::system(cmd2.c_str()) != 0);
  std::ifstream e(err);
  const std::string msg((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
  CHECK(msg.find("not valid JSON") != std::string::npos);
  CHECK(std::system((std::string(PIPPY_VIEW_EXE) + " --width 5 x.json 2>/dev/null").c_str()) != 0);
  for (const auto& p : {in, out, bad, err})
    std::filesystem::remove(p);
}

namespace {
// Runs `draw` under a hang guard: a loop that never ends (issue 14: ticks stepping over an astronomically
// large or far-away span) aborts the binary with a message instead of hanging ctest until its timeout.
template <class F> void within_seconds(int seconds, const char* what, F draw) {
  test::watchdog guard(std::chrono::seconds(seconds), [what] {
    std::fprintf(stderr, "hung: %s\n", what);
    std::_Exit(70);
  });
  draw();
  CHECK(!guard.done());
}
// Pixels of the image that are neither white nor the lane background: something was drawn.
std::size_t inked(const QImage& img) {
  std::size_t n = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x)
      n += img.pixel(x, y) != QColor(Qt::white).rgba() && img.pixel(x, y) != QColor(246, 246, 246).rgba();
  return n;
}
} // namespace

TEST_CASE("a trace spanning 1e300 us is drawn, its axis ticks bounded", "[gui][render][robust]") {
  test::app();
  trace t = test::schedule_trace("gpipe", 4, 4);
  const std::size_t far = test::find_event(t, "0F1", 0);
  t.events[far].start_us = -1e300, t.events[far].end_us = -1e300 + 1;
  TimelineView view;
  view.add_trace(t, "far");
  QImage img;
  within_seconds(20, "render of a 1e300 us span", [&] { img = view.render_image(QSize(1000, 300)); });
  REQUIRE(!img.isNull());
  CHECK(view.view_start_us() == -1e300);
  CHECK(view.us_per_pixel() > 1e296);
  CHECK(view.drawn_actions() > 0);
  CHECK(inked(img) > 1000);
  // Zoomed in by 10^310 around the lone far action: 1e-6 us per pixel at t = -1e300, where doubles are
  // 1e284 apart. The axis finds at most one tick and the paint ends.
  for (int i = 0; i < 310; ++i)
    view.zoom(10, TimelineView::left_margin);
  CHECK(view.us_per_pixel() == Approx(1e-6));
  CHECK(view.view_start_us() == Approx(-1e300));
  within_seconds(20, "paint zoomed in at t = -1e300", [&] {
    QPainter p(&img);
    view.paint(p, QRect(0, 0, 1000, 300));
  });
  for (int i = 0; i < 100; ++i) // panned and zoomed out far past the data: the view stays finite
    view.pan_pixels(-1e6), view.zoom(0.5, 10);
  CHECK(std::isfinite(view.view_start_us()));
  CHECK(std::isfinite(view.us_per_pixel()));
  within_seconds(20, "paint panned far out", [&] {
    QPainter p(&img);
    view.paint(p, QRect(0, 0, 1000, 300));
  });
}

TEST_CASE("zoomed far in on a trace far from zero, the axis still ends", "[gui][render][robust]") {
  test::app();
  trace t = test::schedule_trace("gpipe", 4, 4);
  for (auto& e : t.events) // microseconds since the epoch, as profilers write them
    e.start_us += 1.7e15, e.end_us += 1.7e15;
  TimelineView view;
  view.add_trace(t, "epoch");
  view.render_image(QSize(1000, 300));
  for (int i = 0; i < 40; ++i) // zoom clamps at 1e-6 us per pixel, far below the spacing of doubles at 1.7e15
    view.zoom(10, 500);
  CHECK(view.us_per_pixel() == Approx(1e-6));
  QImage img(1000, 300, QImage::Format_ARGB32);
  img.fill(Qt::white);
  within_seconds(20, "axis of a view 1e-3 us wide at t = 1.7e15 us", [&] {
    QPainter p(&img);
    view.paint(p, QRect(0, 0, 1000, 300));
  });
  CHECK(view.drawn_actions() > 0);
  CHECK(inked(img) > 1000);
}

TEST_CASE("a trace from -1.7e308 to 1.7e308 us (an infinite span) is drawn without hanging", "[gui][render][robust]") {
  test::app();
  trace t = test::schedule_trace("gpipe", 4, 4);
  t.events[test::find_event(t, "0F1", 0)].start_us = -1.7e308;
  t.events[test::find_event(t, "3B3", 3)].end_us = 1.7e308;
  TimelineView view;
  view.add_trace(t, "inf");
  QImage img;
  within_seconds(20, "render of an infinite span", [&] { img = view.render_image(QSize(1000, 300)); });
  REQUIRE(!img.isNull());
  CHECK(std::isfinite(view.us_per_pixel()));
  CHECK(std::isfinite(view.view_start_us()));
  CHECK(inked(img) > 1000);
}

TEST_CASE("pippy-view --export of a trace with ts -1e300 finishes", "[gui][export][robust]") {
  test::app();
  std::string json = to_chrome_json(test::schedule_trace("gpipe", 4, 4));
  const std::string from = "\"ts\":1000.0", to = "\"ts\":-1e300";
  const auto at = json.find(from);
  REQUIRE(at != std::string::npos);
  json.replace(at, from.size(), to);
  const std::string in = test::temp_file("export-far.json", json);
  const std::string out = (std::filesystem::temp_directory_path() / ("pippy-export-far-" + std::to_string(::getpid()) + ".png")).string();
  const std::string err = out + ".err";
  // timeout(1) bounds a hang; 124 would be its exit status.
  const std::string cmd = "timeout 60 " + std::string(PIPPY_VIEW_EXE) + " --export " + out + " --width 800 --height 300 " + in + " 2>" + err;
  const int status = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(status));
  const int rc = WEXITSTATUS(status);
  CHECK(rc != 124);
  std::ifstream e(err);
  const std::string msg((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
  INFO("exit " << rc << ", stderr: " << msg);
  CHECK((rc == 0 || rc == 1)); // 1: the trace opened with an error (a parser that rejects such times)
  QImage img(QString::fromStdString(out)); // written either way
  REQUIRE(!img.isNull());
  CHECK(img.width() == 800);
  if (rc == 0) // the parser took the time: the actions are drawn
    CHECK(inked(img) > 1000);
  for (const auto& p : {in, out, err})
    std::filesystem::remove(p);
}

TEST_CASE("axis ticks: 1, 2 or 5 x 10^k apart, bounded, advancing far from zero", "[gui][render][robust]") {
  using V = std::vector<double>;
  CHECK(TimelineView::axis_ticks(0, 100) == V{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100});
  CHECK(TimelineView::axis_ticks(3, 37) == V{5, 10, 15, 20, 25, 30, 35});
  CHECK(TimelineView::axis_ticks(-1e300, 0).size() == 11); // 1e299 apart
  CHECK(TimelineView::axis_ticks(-1e300, 0).front() == -1e300);
  CHECK(TimelineView::axis_ticks(-1e300, 0)[1] == -1e300 + 1e299);
  // 1e-3 us wide at 1.7e15 us, where doubles are 0.25 apart: the step grows to 1 us, and no multiple of
  // it lies in the view, or one does; never the same tick again and again.
  CHECK(TimelineView::axis_ticks(1.7e15, 1.7e15 + 1e-3).size() <= 1);
  CHECK(TimelineView::axis_ticks(1.7e15 - 0.5, 1.7e15 + 0.5) == V{1.7e15});
  CHECK(TimelineView::axis_ticks(0, 1e6, 3) == V{0, 1e5, 2e5}); // the cap
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(TimelineView::axis_ticks(-inf, 0).empty());
  CHECK(TimelineView::axis_ticks(0, nan).empty());
  CHECK(TimelineView::axis_ticks(-1.7e308, 1.7e308).empty()); // the span itself overflows
  CHECK(TimelineView::axis_ticks(5, 5).empty());
}
