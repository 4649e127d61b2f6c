#pragma once
#include <catch2/catch.hpp>

#include <QApplication>
#include <QElapsedTimer>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy::test {

// One QApplication for the whole test binary; offscreen unless the environment says otherwise.
inline QApplication& app() {
  static int argc = 1;
  static char name[] = "test_gui";
  static char* argv[] = {name, nullptr};
  if (const char* p = std::getenv("QT_QPA_PLATFORM"); !p || !*p)
    setenv("QT_QPA_PLATFORM", "offscreen", 1);
  // Never destroyed: tearing Qt down from a static destructor crashed under xcb.
  static QApplication* a = new QApplication(argc, argv);
  return *a;
}

inline trace schedule_trace(const char* name, int R, int M, int V = 0) {
  auto s = make_schedule({.name = name, .num_ranks = R, .num_microbatches = M, .stages_per_rank = V, .optimizer_steps = false});
  return trace_from_evaluation(evaluate(s, unit_costs{}), std::string(name) + " R=" + std::to_string(R) + " M=" + std::to_string(M));
}

// The index of action `name` (as PyTorch spells it, "0F1") on `rank`; fails the test when there is none.
inline std::size_t find_event(const trace& t, const char* name, int rank) {
  for (std::size_t i = 0; i < t.events.size(); ++i)
    if (to_string(t.events[i].act) == name && t.events[i].rank == rank)
      return i;
  FAIL("no " << name << " on rank " << rank);
  return 0;
}

inline std::string temp_file(const std::string& name, const std::string& content) {
  const auto p = std::filesystem::temp_directory_path() / ("pippy-gui-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(p) << content;
  return p.string();
}

// Processes events until pred(). timeout_ms is a hang guard, never the assertion: the wait ends as soon
// as pred() holds, so a generous guard costs nothing and does not flake on a loaded machine.
template <class Pred> bool wait_for(Pred pred, int timeout_ms = 30000) {
  QElapsedTimer t;
  t.start();
  while (!pred()) {
    if (t.elapsed() > timeout_ms)
      return false;
    QApplication::processEvents(QEventLoop::AllEvents, 10);
    ::usleep(2000);
  }
  return true;
}

} // namespace pippy::test
