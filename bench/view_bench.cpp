// Viewer scale bench: open time and frame times of a large trace (default 1 M actions), offscreen.
//   view_bench [--actions N] [--keep FILE]
#include <QApplication>
#include <QImage>
#include <QPainter>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/gui/timeline_view.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/live.hpp"
#include "pippy/traces/metrics.hpp"

using clk = std::chrono::steady_clock;
static double ms_since(clk::time_point t) { return std::chrono::duration<double, std::milli>(clk::now() - t).count(); }

int main(int argc, char** argv) {
  long actions = 1000000;
  std::string keep;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--actions")
      actions = std::strtol(argv[i + 1], nullptr, 10);
    else if (a == "--keep")
      keep = argv[i + 1];
  }
  if (!std::getenv("QT_QPA_PLATFORM"))
    setenv("QT_QPA_PLATFORM", "offscreen", 1);
  static int qargc = 1;
  static char name[] = "view_bench";
  static char* qargv[] = {name, nullptr};
  auto* app = new QApplication(qargc, qargv);
  (void)app;

  const int R = 8;
  const int M = static_cast<int>(std::max<long>(1, actions / (2 * R)));
  auto t_gen = clk::now();
  const auto s = pippy::make_schedule({.name = "1f1b", .num_ranks = R, .num_microbatches = M, .optimizer_steps = false});
  const auto tr = pippy::trace_from_evaluation(pippy::evaluate(s, pippy::unit_costs{}), "1f1b bench");
  const std::string path = keep.empty() ? (std::filesystem::temp_directory_path() / "pippy-view-bench.json").string() : keep;
  pippy::save_chrome_trace(tr, path);
  const double gen_ms = ms_since(t_gen);
  const auto bytes = std::filesystem::file_size(path);

  auto t_open = clk::now();
  pippy::gui::TimelineView view;
  view.resize(1600, 400);
  auto t_load = clk::now();
  auto loaded = pippy::gui::load_any_trace(path);
  const double load_ms = ms_since(t_load);
  auto t_index = clk::now();
  view.add_trace(std::move(loaded), "bench");
  const double index_ms = ms_since(t_index);
  QImage img(1600, 400, QImage::Format_ARGB32);
  auto paint = [&] {
    QPainter p(&img);
    view.paint(p, QRect(0, 0, 1600, 400));
  };
  auto t_first = clk::now();
  view.fit();
  paint();
  const double first_ms = ms_since(t_first);
  const double open_ms = ms_since(t_open);
  const std::size_t drawn_fit = view.drawn_actions();

  // Fully zoomed out frames.
  auto t_full = clk::now();
  for (int i = 0; i < 20; ++i)
    paint();
  const double full_frame_ms = ms_since(t_full) / 20;

  // Zoom so that about 60 micro-batches (~1000 boxes) are visible, then pan through the middle.
  view.zoom(static_cast<double>(M) / 60.0, pippy::gui::TimelineView::left_margin + 700);
  std::vector<double> frames;
  for (int i = 0; i < 200; ++i) {
    auto t = clk::now();
    view.pan_pixels(-23);
    paint();
    frames.push_back(ms_since(t));
  }
  std::sort(frames.begin(), frames.end());
  double mean = 0;
  for (double f : frames)
    mean += f;
  mean /= static_cast<double>(frames.size());
  const std::size_t drawn_zoom = view.drawn_actions();

  // Publisher overhead with no viewer attached.
  pippy::live_publisher pub({.port = 0});
  auto t_pub = clk::now();
  const int npub = 200000;
  for (int i = 0; i < npub; ++i)
    pub.publish(tr.events[static_cast<std::size_t>(i) % tr.events.size()]);
  const double pub_us = ms_since(t_pub) * 1000 / npub;

  // Live: the same events streamed over TCP into a second view, which keeps following the head.
  pippy::gui::TimelineView live_view;
  live_view.resize(1600, 400);
  pippy::live_publisher live_pub({.port = 0, .queue_capacity = 1u << 21, .replay_capacity = 1u << 21});
  live_view.start_live(QString("127.0.0.1:%1").arg(live_pub.port()), 20);
  auto t_live = clk::now();
  std::size_t next = 0;
  const auto& lt = live_view.panels()[0]->t;
  while (lt.events.size() < tr.events.size() && ms_since(t_live) < 120000) {
    for (std::size_t k = 0; k < 20000 && next < tr.events.size(); ++k)
      live_pub.publish(tr.events[next++]);
    QApplication::processEvents(QEventLoop::AllEvents, 5);
    if (next == tr.events.size())
      live_view.poll_live();
  }
  const double live_ms = ms_since(t_live);
  const std::size_t live_got = lt.events.size();

  std::printf("actions: %zu (%d ranks x %d micro-batches, F+B), file %.1f MB, generated+written in %.0f ms\n",
              tr.events.size(), R, M, bytes / 1e6, gen_ms);
  std::printf("open: %.0f ms total = parse %.0f ms + index/metrics %.0f ms + first frame %.0f ms (%zu actions in view)\n",
              open_ms, load_ms, index_ms, first_ms, drawn_fit);
  std::printf("frame, fully zoomed out: %.2f ms\n", full_frame_ms);
  std::printf("pan frame at ~%zu visible actions: mean %.2f ms, median %.2f ms, p95 %.2f ms, max %.2f ms (200 frames)\n",
              drawn_zoom, mean, frames[frames.size() / 2], frames[frames.size() * 95 / 100], frames.back());
  std::printf("live_publisher.publish with no viewer: %.2f us per event (JSON formatting included)\n", pub_us);
  std::printf("live: %zu of %zu events streamed over TCP, received and indexed by a following view in %.0f ms (%.0f k events/s), %llu dropped\n",
              live_got, tr.events.size(), live_ms, live_got / live_ms, static_cast<unsigned long long>(live_pub.dropped()));
  if (keep.empty())
    std::filesystem::remove(path);
  return 0;
}
