// PiPPy README's MyNetwork (512 -> 512 -> 1024 -> 256 -> 10 classes) trained with a pipeline schedule.
//   pippy run --nproc 3 -- mynetwork --schedule 1f1b --microbatches 6 --steps 5 --seed 0 [--trace t.json]
// With WORLD_SIZE=1 it trains the unsplit model on the same data; every schedule and the unsplit run
// print the same `step N loss X` lines (to float32 rounding). --in-process R runs all R ranks of the
// schedule in this one process instead.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>

#include "pippy/runtime/actor_backend.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/gloo_transport.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/profile.hpp"
#include "pippy/runtime/reference_models.hpp"
#include "pippy/runtime/sequential_stage.hpp"
#include "pippy/traces/chrome_trace.hpp"

using namespace pippy;

namespace {

// One write per message, so lines of processes sharing a terminal or pipe do not interleave.
void say(const std::string& line) {
  const std::string l = line + "\n";
  std::fwrite(l.data(), 1, l.size(), stderr);
  std::fflush(stderr);
}

struct options {
  std::string schedule = "1f1b";
  std::string runtime = "actors";
  int microbatches = 6;
  int steps = 5;
  std::uint64_t seed = 0;
  int64_t batch = 64;
  int stages_per_rank = 0;
  double lr = 0.05;
  int threads = 1;
  int in_process = 0;
  double timeout_s = 60;
  int64_t in_dim = 512;
  std::vector<int64_t> dims = {512, 1024, 256};
  std::string trace_file;
  std::string profile_file;
  int fail_rank = -1;
  int fail_step = -1;
};

torch::Tensor ce(const torch::Tensor& out, const torch::Tensor& y) {
  return torch::nn::functional::cross_entropy(out, y);
}

void print_loss(int step, double loss) {
  std::ostringstream s;
  s << "step " << step << " loss " << std::setprecision(9) << loss << "\n";
  std::cout << s.str() << std::flush;
}

// Events after the first step (warm-up and shape agreement), per rank.
trace steady_part(const trace& t, int steps) {
  trace out = t;
  if (steps < 2)
    return out;
  std::map<int, std::vector<trace_event>> by_rank;
  for (const auto& e : t.events)
    by_rank[e.rank].push_back(e);
  out.events.clear();
  for (auto& [r, evs] : by_rank) {
    const std::size_t per_step = evs.size() / static_cast<std::size_t>(steps);
    out.events.insert(out.events.end(), evs.begin() + static_cast<std::ptrdiff_t>(per_step), evs.end());
  }
  return out;
}

void shift_to_zero(trace& t) {
  double lo = std::numeric_limits<double>::max();
  for (const auto& e : t.events)
    lo = std::min(lo, e.start_us);
  for (auto& e : t.events) {
    e.start_us -= lo;
    e.end_us -= lo;
  }
}

void report(const options& o, trace t, int steps, int num_stages, const std::map<int, std::uint64_t>& act,
            const std::map<int, std::uint64_t>& params) {
  shift_to_zero(t);
  if (!o.trace_file.empty())
    save_chrome_trace(t, o.trace_file);
  auto steady = steady_part(t, steps);
  const auto sum = summarize(steady, std::max(1, steps - 1));
  std::cout << "measured step_us " << sum.step_us << " bubble " << sum.bubble_fraction
            << " (steps after the first)\n";
  if (!o.profile_file.empty())
    save_cost_profile(measure_stage_costs(steady, num_stages, act, params), o.profile_file);
}

int run_unsplit(const options& o) {
  const mynetwork_options net{.in_dim = o.in_dim, .dims = o.dims};
  auto model = make_mynetwork(o.seed, net);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(o.lr).momentum(0.9));
  trace t;
  t.num_ranks = 1;
  t.run = "unsplit measured";
  auto rec = [&](action_kind k, double s, double e) {
    t.events.push_back({.rank = 0, .act = {0, k, k == action_kind::optimizer_step ? no_microbatch : 0},
                        .start_us = s, .end_us = e, .source = event_source::measured});
  };
  for (int k = 0; k < o.steps; ++k) {
    auto data = synthetic_batch(o.seed, k, o.batch, net.in_dim, net.classes);
    double t0 = now_us();
    auto loss = ce(model->forward(data.x), data.y);
    double t1 = now_us();
    loss.backward();
    double t2 = now_us();
    opt.step();
    opt.zero_grad();
    double t3 = now_us();
    rec(action_kind::forward, t0, t1);
    rec(action_kind::full_backward, t1, t2);
    rec(action_kind::optimizer_step, t2, t3);
    print_loss(k, loss.item<double>());
  }
  std::uint64_t pb = 0;
  for (auto& p : model->parameters())
    pb += static_cast<std::uint64_t>(p.numel()) * 4;
  report(o, t, o.steps, 1, {}, {{0, pb}});
  return 0;
}

int run_pipelined(const options& o, const dist_env& env) {
  const int ranks = o.in_process > 0 ? o.in_process : env.world_size;
  auto sched = make_schedule({.name = o.schedule, .num_ranks = ranks, .num_microbatches = o.microbatches,
                              .stages_per_rank = o.stages_per_rank});
  const int S = sched.shape.num_stages();
  const mynetwork_options net{.in_dim = o.in_dim, .dims = o.dims};
  auto model = make_mynetwork(o.seed, net); // every rank builds the whole model with the same seed...
  auto mods = split_sequential(model, mynetwork_boundaries(net, S));
  std::unique_ptr<gloo_transport> transport;
  if (o.in_process == 0)
    transport = std::make_unique<gloo_transport>(
        env, std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  const int my_rank = transport ? transport->rank() : -1;
  std::vector<std::shared_ptr<stage_executor>> stages(static_cast<std::size_t>(S));
  std::map<int, std::uint64_t> param_bytes;
  for (int s = 0; s < S; ++s) {
    if (transport && sched.shape.rank_of(s) != my_rank)
      continue; // ...and keeps only its own stages
    auto& m = mods[static_cast<std::size_t>(s)];
    auto opt = std::make_shared<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(o.lr).momentum(0.9));
    stages[static_cast<std::size_t>(s)] = std::make_shared<stage_executor>(s, S, m, opt, ce);
    param_bytes[s] = stages[static_cast<std::size_t>(s)]->parameter_bytes();
  }
  // The same stage actors as the simulator (runtime "actors"), or the plain engine (runtime "engine").
  caf::actor_system_config cfg;
  configure_for_training(cfg);
  caf::actor_system sys{cfg};
  std::unique_ptr<tensor_channel> channel;
  if (transport)
    channel = std::make_unique<tensor_channel>(*transport);
  std::unique_ptr<pipeline_engine> engine;
  std::unique_ptr<actor_pipeline> actors;
  if (o.runtime == "engine")
    engine = std::make_unique<pipeline_engine>(sched, stages, transport.get());
  else
    actors = std::make_unique<actor_pipeline>(sys, sched, stages, channel.get(),
                                              std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  auto events = [&] { return engine ? engine->events() : actors->events(); };
  auto activations = [&] { return engine ? engine->activation_bytes() : actors->activation_bytes(); };
  for (int k = 0; k < o.steps; ++k) {
    if (k == o.fail_step && my_rank == o.fail_rank) {
      say("rank " + std::to_string(my_rank) + ": killing myself at step " + std::to_string(k) + " (--fail-rank)");
      std::raise(SIGKILL);
    }
    auto data = synthetic_batch(o.seed, k, o.batch, net.in_dim, net.classes);
    if (auto loss = engine ? engine->step({data.x}, data.y) : actors->step({data.x}, data.y))
      print_loss(k, *loss);
  }
  if (!transport) {
    report(o, events(), o.steps, S, activations(), param_bytes);
    return 0;
  }
  // Gather every rank's events and sizes on rank 0 through the rendezvous store.
  std::ostringstream lines;
  const auto my_events = events();
  for (const auto& e : my_events.events)
    lines << to_json_line(e) << "\n";
  for (auto& [s, b] : activations())
    lines << "A " << s << " " << b << "\n";
  for (auto& [s, b] : param_bytes)
    lines << "P " << s << " " << b << "\n";
  transport->store_set("pippy/events/" + std::to_string(my_rank), lines.str());
  if (my_rank == 0) {
    trace all;
    all.num_ranks = ranks;
    all.run = my_events.run;
    std::map<int, std::uint64_t> act, params;
    for (int r = 0; r < ranks; ++r) {
      std::istringstream in(transport->store_get("pippy/events/" + std::to_string(r)));
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("A ", 0) == 0 || line.rfind("P ", 0) == 0) {
          std::istringstream f(line.substr(2));
          int s = 0;
          std::uint64_t b = 0;
          f >> s >> b;
          (line[0] == 'A' ? act : params)[s] = b;
        } else if (!line.empty()) {
          parse_json_line(line, all, "rank " + std::to_string(r));
        }
      }
    }
    report(o, all, o.steps, S, act, params);
  }
  transport->barrier();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"MyNetwork (PiPPy README) trained with a pipeline schedule on the real backend"};
  app.add_option("--schedule", o.schedule, "schedule name (pippy schedule --list)");
  app.add_option("--runtime", o.runtime, "actors: the stage actors shared with the simulator; engine: a plain loop")
      ->check(CLI::IsMember({"actors", "engine"}));
  app.add_option("--microbatches", o.microbatches, "micro-batches per step")->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the model and the synthetic data");
  app.add_option("--batch", o.batch, "rows per step")->check(CLI::PositiveNumber);
  app.add_option("--stages-per-rank", o.stages_per_rank, "0 = the schedule's default");
  app.add_option("--in-dim", o.in_dim, "input features (README: 512)")->check(CLI::PositiveNumber);
  app.add_option("--dims", o.dims, "hidden layer sizes (README: 512,1024,256)")->delimiter(',');
  app.add_option("--lr", o.lr, "SGD learning rate (momentum 0.9)");
  app.add_option("--threads", o.threads, "libtorch intra-op threads per process")->check(CLI::PositiveNumber);
  app.add_option("--in-process", o.in_process, "run all R ranks of the schedule in this process");
  app.add_option("--timeout", o.timeout_s, "c10d timeout in seconds (a lost peer is reported by then)");
  app.add_option("--trace", o.trace_file, "write the measured Chrome trace here (rank 0)");
  app.add_option("--profile", o.profile_file, "write measured per-stage costs (simulator cost file)");
  app.add_option("--fail-rank", o.fail_rank, "fault injection: this rank kills itself...");
  app.add_option("--fail-step", o.fail_step, "...at the start of this step");
  CLI11_PARSE(app, argc, argv);
  try {
    at::set_num_threads(o.threads);
    const auto env = read_dist_env();
    if (env.world_size == 1 && o.in_process == 0)
      return run_unsplit(o);
    return run_pipelined(o, env);
  } catch (const peer_error& e) {
    say(std::string("error: ") + e.what());
    std::_Exit(3); // c10d objects may block in their destructors once a peer is gone
  } catch (const input_error& e) {
    say(std::string("error: ") + e.what());
    return 2;
  } catch (const std::exception& e) {
    say(std::string("error: ") + e.what());
    std::_Exit(1);
  }
}
