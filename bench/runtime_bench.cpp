// Per-action overhead of the real backend with tiny stages (issue 4's "runtime overhead per action").
// A stage is Linear(4,4)+ReLU on 2 rows, so an action's own compute is a few microseconds of libtorch
// autograd; everything else in a step is the runtime: the engine's loop, or the actors' messages, the
// hand-off to the rank's torch worker thread and back, payload hand-over between stages.
//   runtime_bench [--ranks R] [--microbatches M] [--steps K]
// Prints per runtime: wall time per step, compute actions per step, wall per action, compute per action
// (measured inside the actions), overhead per action = (R x wall - compute busy) / actions (at R > 1 it
// also counts the schedule's own bubbles), the runtime's lateness per action = R x (wall - replay) /
// actions, where replay is the step time core's flat evaluator gives the same schedule with each action
// taking its measured mean time and nothing else (no overhead, instant hand-over: a perfect runtime), and
// the mean start delay.
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pippy/core/dependencies.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/runtime/step_driver.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/traces/profile.hpp"
#include "pippy/runtime/sequential_stage.hpp"
#include "pippy/traces/metrics.hpp"

using namespace pippy;

namespace {
struct result {
  double wall_per_step_us = 0;
  double actions_per_step = 0;
  double busy_per_step_us = 0;
  double start_delay_us = 0; // mean over compute actions of start - ready
  double replay_us = 0;      // the step time of a perfect runtime with the measured action times
};

// The mean over the measured steps of what the flat evaluator gives each step with its own measured
// stage costs and no runtime overhead.
double mean_replay_us(const schedule& s, const trace& t, int steps, int first) {
  flat_evaluator eval;
  double sum = 0;
  for (int k = first; k < steps; ++k) {
    auto costs = measure_stage_costs(step_range(t, steps, k, 1), s.shape.num_stages(), {});
    costs.action_overhead_us = 0;
    costs.step_overhead_us = 0;
    sum += eval.evaluate(s, costs).makespan_us;
  }
  return sum / std::max(1, steps - first);
}

// How late the runtime starts an action, on average: start minus the moment it could have started (the
// end of the rank's previous compute action and of its inputs' producers, core's dependency rule). A
// perfect runtime scores 0 whatever the schedule's bubbles; the message latency between ranks counts.
double mean_start_delay_us(const trace& t, int steps, int first) {
  double sum = 0;
  std::size_t n = 0;
  for (int k = first; k < steps; ++k) {
    const trace one = step_range(t, steps, k, 1);
    std::map<std::tuple<int, int, int>, double> end; // (stage, kind, micro-batch) -> end
    int num_stages = 0;
    for (const auto& e : one.events)
      if (is_compute(e.act.kind)) {
        end[{e.act.stage, static_cast<int>(e.act.kind), e.act.microbatch}] = e.end_us;
        num_stages = std::max(num_stages, e.act.stage + 1);
      }
    std::map<int, double> rank_free;
    std::vector<const trace_event*> order;
    for (const auto& e : one.events)
      if (is_compute(e.act.kind))
        order.push_back(&e);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->start_us < b->start_us; });
    for (const auto* e : order) {
      auto free = rank_free.find(e->rank);
      if (free != rank_free.end()) { // a rank's first action waits for the step to start
        double ready = free->second;
        for (const dependency& d : inputs_of(e->act, num_stages))
          for (int i = 0; i < d.num_kinds; ++i)
            for (int mb = 0; mb < (d.microbatch == no_microbatch ? 1024 : 1); ++mb) {
              auto it = end.find({d.stage, static_cast<int>(d.kinds[static_cast<std::size_t>(i)]),
                                  d.microbatch == no_microbatch ? mb : d.microbatch});
              if (it != end.end())
                ready = std::max(ready, it->second);
            }
        sum += std::max(0.0, e->start_us - ready);
        ++n;
      }
      rank_free[e->rank] = e->end_us;
    }
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

torch::Tensor loss_fn(const torch::Tensor& out, const torch::Tensor& y) {
  return torch::nn::functional::mse_loss(out, y);
}

result run(const std::string& runtime, int R, int M, int K) {
  torch::manual_seed(0);
  torch::nn::Sequential seq;
  for (int i = 0; i < R; ++i) {
    seq->push_back(torch::nn::Linear(4, 4));
    seq->push_back(torch::nn::ReLU());
  }
  auto sched = make_schedule({.name = R == 1 ? "gpipe" : "1f1b", .num_ranks = R, .num_microbatches = M});
  auto mods = split_sequential(seq, even_boundaries(seq->size(), R));
  std::vector<std::shared_ptr<stage_executor>> stages;
  for (int s = 0; s < R; ++s) {
    auto& m = mods[static_cast<std::size_t>(s)];
    stages.push_back(std::make_shared<stage_executor>(
        s, R, m, std::make_shared<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(0.01)), loss_fn));
  }
  caf::actor_system_config cfg;
  const char* poll = std::getenv("PIPPY_POLL_US"); // default: what an in-process training run polls
  configure_for_training(cfg, 2, poll ? std::chrono::microseconds(std::atoi(poll)) : in_process_poll);
  if (const char* m = std::getenv("PIPPY_MODERATE_POLLS")) // compare with CAF's default (500)
    cfg.set("work-stealing.moderate-poll-attempts", static_cast<size_t>(std::atoi(m)));
  caf::actor_system sys{cfg};
  std::unique_ptr<pipeline_engine> engine;
  std::unique_ptr<step_driver> actors;
  if (runtime == "engine")
    engine = std::make_unique<pipeline_engine>(sched, stages);
  else
    actors = std::make_unique<step_driver>(sys, sched, stages, cpu_backend());
  auto x = torch::randn({2L * M, 4});
  auto y = torch::randn({2L * M, 4});
  auto step = [&] { return engine ? engine->step({x}, y) : actors->step({x}, y); };
  auto busy = [&] {
    double b = 0;
    std::size_t n = 0;
    for (const auto& e : (engine ? engine->events() : actors->events()).events)
      if (is_compute(e.act.kind)) {
        b += e.duration_us();
        ++n;
      }
    return std::pair{b, n};
  };
  for (int i = 0; i < 3; ++i)
    step();
  const auto [b0, n0] = busy();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < K; ++i)
    step();
  const double wall = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  const auto [b1, n1] = busy();
  const int warmup = 3;
  const auto& events = engine ? engine->events() : actors->events();
  return {wall / K, static_cast<double>(n1 - n0) / K, (b1 - b0) / K, mean_start_delay_us(events, warmup + K, warmup),
          mean_replay_us(sched, events, warmup + K, warmup)};
}
// F, B, I and W of one stage of 4 x Linear(512)+ReLU on 16 rows (a micro-batch of the pipeline bench):
// does the split backward cost what the full one does (I + W close to B)?
void split_backward_costs(bool split) {
  torch::manual_seed(0);
  torch::nn::Sequential seq;
  for (int i = 0; i < 4; ++i) {
    seq->push_back(torch::nn::Linear(512, 512));
    seq->push_back(torch::nn::ReLU());
  }
  auto stage = split_sequential(seq, {})[0];
  stage_executor ex(1, 3, stage, nullptr);
  ex.set_split_weight(split);
  auto x = torch::randn({16, 512});
  auto g = torch::randn({16, 512});
  const int n = 200;
  double f = 0, b = 0, i = 0, w = 0;
  auto t = [] { return std::chrono::steady_clock::now(); };
  auto us = [](auto a, auto z) { return std::chrono::duration<double, std::micro>(z - a).count(); };
  for (int k = 0; k < n + 20; ++k) {
    auto t0 = t();
    ex.forward(2 * k, {x});
    auto t1 = t();
    ex.full_backward(2 * k, {g});
    auto t2 = t();
    ex.forward(2 * k + 1, {x});
    auto t3 = t();
    ex.backward_input(2 * k + 1, {g});
    auto t4 = t();
    ex.backward_weight(2 * k + 1);
    auto t5 = t();
    if (k >= 20) {
      f += us(t0, t1) + us(t2, t3);
      b += us(t1, t2);
      i += us(t3, t4);
      w += us(t4, t5);
    }
  }
  std::printf("%s, stage 4 x Linear(512)+ReLU, 16 rows, mean of %d: F %.1f us, B %.1f us, "
              "I %.1f us + W %.1f us = %.1f us (I+W)/B = %.2f; W split %zu, fallback %zu\n",
              split ? "split W (captured grads)" : "W as a second pass", n, f / (2 * n), b / n, i / n, w / n, (i + w) / n, (i + w) / b, ex.split_weight_passes(),
              ex.fallback_weight_passes());
}
} // namespace

int main(int argc, char** argv) {
  int R = 2, M = 16, K = 50;
  const char* usage = "usage: runtime_bench [--ranks R (2)] [--microbatches M (16)] [--steps K (50)]\n"
                      "  per-action overhead of the stage actors and the plain engine on tiny stages, in one process\n";
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    int* into = a == "--ranks" ? &R : a == "--microbatches" ? &M : a == "--steps" ? &K : nullptr;
    char* end = nullptr;
    const long v = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
    if (into == nullptr || i + 1 >= argc || *end != 0 || v < 1 || v > 100000) {
      std::fprintf(stderr, "runtime_bench: bad option '%s'%s\n%s", a.c_str(),
                   into ? " (a whole number from 1 to 100000 follows it)" : "", usage);
      return 2;
    }
    *into = static_cast<int>(v);
  }
  at::set_num_threads(1);
  split_backward_costs(true);
  split_backward_costs(false);
  std::printf("tiny stages (Linear(4,4)+ReLU, 2 rows per micro-batch), R=%d in one process, M=%d, %d steps\n", R, M, K);
  std::printf("%-8s %14s %10s %14s %16s %20s %16s %16s %16s\n", "runtime", "wall/step us", "actions",
              "wall/action us", "compute/action us", "overhead/action us", "replay/step us", "lateness/action us",
              "start delay us");
  for (const char* rt : {"engine", "actors"}) {
    const auto r = run(rt, R, M, K);
    std::printf("%-8s %14.1f %10.0f %14.2f %16.2f %20.2f %16.1f %16.2f %16.2f\n", rt, r.wall_per_step_us,
                r.actions_per_step, r.wall_per_step_us / r.actions_per_step, r.busy_per_step_us / r.actions_per_step,
                (R * r.wall_per_step_us - r.busy_per_step_us) / r.actions_per_step, r.replay_us,
                R * (r.wall_per_step_us - r.replay_us) / r.actions_per_step, r.start_delay_us);
  }
  return 0;
}
