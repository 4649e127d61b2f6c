// Live sessions fed by a real simulation: `pippy sim --live` started by the test as a separate process
// (the job), a TimelineView following its stream (the viewer). The view receives and draws exactly the
// events the simulation emitted, and the job finishes normally when the viewer goes away mid-stream.
#include <catch2/catch.hpp>

#include <QPainter>
#include <memory>

#include "live_job.hpp"
#include "pippy/gui/timeline_view.hpp"

using namespace pippy;
using pippy::gui::TimelineView;

TEST_CASE("a live session shows a running `pippy sim --live`: drawn actions equal the events it sent", "[gui][live][sim]") {
  test::app();
  const std::string trace_path = test::temp_file("live-sim.json", "");
  QProcess job;
  const int port = test::start_sim_job(job,
                                       {"--schedule", "interleaved-1f1b", "--ranks", "4", "--stages-per-rank", "2", "--microbatches",
                                        "8", "--latency-us", "0.5", "--activation-bytes", "1000", "--pace", "0.002"},
                                       trace_path);
  TimelineView view;
  view.resize(1400, 900);
  REQUIRE(view.start_live(QString("127.0.0.1:%1").arg(port), 5));
  // Paced at 0.002 virtual us per wall us: the ~60 us makespan plays in ~30 ms while the view follows.
  REQUIRE(test::sim_job_succeeded(job));
  const trace sent = load_chrome_trace(trace_path);
  REQUIRE(sent.events.size() > 100);
  REQUIRE(test::wait_for([&] { return view.panels()[0]->t.events.size() == sent.events.size(); }));
  const auto& got = view.panels()[0]->t;
  CHECK(got.memory.size() == sent.memory.size());
  CHECK(view.following());
  view.fit();
  QImage img(1400, 900, QImage::Format_ARGB32);
  QPainter p(&img);
  view.paint(p, QRect(0, 0, 1400, 900));
  CHECK(view.drawn_actions() == sent.events.size());
  CHECK(view.panels()[0]->m.bubble_fraction == Approx(compute_metrics(sent).bubble_fraction));
  CHECK(view.errors().isEmpty());
  std::filesystem::remove(trace_path);
}

TEST_CASE("the job keeps running and completes when its live viewer goes away mid-stream", "[gui][live][sim]") {
  test::app();
  const std::string trace_path = test::temp_file("live-sim-gone.json", "");
  QProcess job;
  // 1f1b R=4 M=64, F=1 B=2: makespan 201 us; at 1e-4 virtual us per wall us that is ~2 s of wall time,
  // long enough that the viewer leaves mid-stream even when the GUI thread is slow to be scheduled.
  const int port =
      test::start_sim_job(job, {"--schedule", "1f1b", "--ranks", "4", "--microbatches", "64", "--pace", "0.0001"}, trace_path);
  auto view = std::make_unique<TimelineView>();
  REQUIRE(view->start_live(QString("127.0.0.1:%1").arg(port), 5));
  REQUIRE(test::wait_for([&] { return view->panels()[0]->t.events.size() >= 20; }));
  CHECK(job.state() != QProcess::NotRunning); // still running: the viewer leaves mid-stream
  view.reset();
  REQUIRE(test::sim_job_succeeded(job));
  const trace done = load_chrome_trace(trace_path);
  // Every action ran: F and B per stage and micro-batch, one U per stage, a transfer per send.
  CHECK(done.events.size() == 4 * 64 * 2 + 4 + 2 * 3 * 64);
  std::filesystem::remove(trace_path);
}
