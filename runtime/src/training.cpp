#include "pippy/runtime/training.hpp"

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <limits>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp> // the job store connect_store returns

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/runtime/checkpoint.hpp"
#include "pippy/runtime/data_parallel.hpp"
#include "pippy/runtime/gloo_group.hpp"
#include "pippy/runtime/job_guard.hpp"
#include "pippy/runtime/link_probe.hpp"
#include "pippy/runtime/live_feed.hpp"
#include "pippy/runtime/microbatch.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/traces/profile.hpp"
#include "pippy/runtime/step_driver.hpp"
#include "pippy/runtime/store.hpp"
#include "pippy/runtime/run_export.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy {

void print_loss(int step, double loss) {
  std::ostringstream s;
  s << "step " << step << " loss " << std::setprecision(9) << loss << "\n";
  std::cout << s.str() << std::flush;
}

namespace {

// What a rank hands rank 0 at the end of a multi-process run, through the store: its measured trace,
// the sizes it saw, and its wall time per step. One JSON document:
// {"trace": <Chrome trace>, "activation_bytes": {"stage": bytes}, "param_bytes": {...}, "step_us": [...],
//  "host": "...", "cpus": [...]} (where it computed: ranks bound to one CPU share it).
struct rank_report {
  trace measured;
  std::map<int, std::uint64_t> activation_bytes, param_bytes;
  std::vector<double> step_us;
  rank_cpus where;
};

rank_cpus this_process_cpus() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {host, allowed_cpus()};
}

std::string to_report_json(const rank_report& r) {
  auto by_stage = [](const std::map<int, std::uint64_t>& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [s, b] : m)
      j[std::to_string(s)] = b;
    return j;
  };
  return nlohmann::json{{"trace", nlohmann::json::parse(to_chrome_json(r.measured))},
                        {"activation_bytes", by_stage(r.activation_bytes)},
                        {"param_bytes", by_stage(r.param_bytes)},
                        {"step_us", r.step_us},
                        {"host", r.where.host},
                        {"cpus", r.where.cpus}}
      .dump();
}

// Throws input_error naming `source` and the field when the report is not one of ours.
rank_report parse_report_json(const std::string& text, const std::string& source) {
  try {
    const auto j = parse_json(text, source);
    rank_report r;
    r.measured = parse_chrome_json(j.at("trace").dump(), source);
    for (const auto* field : {"activation_bytes", "param_bytes"})
      for (const auto& [s, b] : j.at(field).items())
        (std::string(field) == "activation_bytes" ? r.activation_bytes : r.param_bytes)[std::stoi(s)] =
            b.get<std::uint64_t>();
    r.step_us = j.at("step_us").get<std::vector<double>>();
    r.where = {j.at("host").get<std::string>(), j.at("cpus").get<std::vector<int>>()};
    return r;
  } catch (const input_error&) {
    throw;
  } catch (const std::exception& e) {
    throw input_error(source + ": " + e.what());
  }
}
// A multi-process run whose step failed here: say so and exit without unwinding (peers blocked on this
// process's transfers see it gone at once; c10d objects may block in their destructors).
[[noreturn]] void exit_now(const std::string& why, int status) {
  say("error: " + why);
  std::_Exit(status);
}
} // namespace

void say(const std::string& line) {
  const std::string l = line + "\n";
  std::fwrite(l.data(), 1, l.size(), stderr);
  std::fflush(stderr);
}

void report_measured(const training_job& job, trace t, int num_stages, const profile_context& context) {
  const int steps = job.steps;
  shift_to_zero(t);
  if (!job.trace_file.empty())
    save_chrome_trace(t, job.trace_file);
  if (!job.step_trace_file.empty()) {
    auto last = step_range(t, steps, steps - 1);
    shift_to_zero(last);
    last.run += " (last step)";
    save_chrome_trace(last, job.step_trace_file);
  }
  auto steady = steps_after_first(t, steps);
  const auto sum = summarize(steady, std::max(1, steps - 1));
  std::cout << "measured step_us " << sum.step_us << " bubble " << sum.bubble_fraction
            << (steps > 1 ? " (steps after the first)" : " (the only step, its warm-up included)") << " median_step_us "
            << median_step_us(steady, std::max(1, steps - 1)) << "\n";
  if (!job.profile_file.empty()) {
    profile_context with_steps = context;
    with_steps.steps = std::max(1, steps - 1);
    save_cost_file(measure_stage_costs(steady, num_stages, with_steps), job.profile_file, "measured");
  }
}

double unsplit_run::step(int k, const std::function<torch::Tensor()>& forward_loss, torch::optim::Optimizer& optimizer) {
  auto rec = [&](action_kind kind, double s, double e) {
    measured_.events.push_back({.rank = 0, .act = {0, kind, kind == action_kind::optimizer_step ? no_microbatch : 0},
                                .start_us = s, .end_us = e, .source = event_source::measured});
  };
  const double t0 = now_us();
  auto loss = forward_loss();
  const double t1 = now_us();
  loss.backward();
  const double t2 = now_us();
  optimizer.step();
  optimizer.zero_grad();
  const double t3 = now_us();
  rec(action_kind::forward, t0, t1);
  rec(action_kind::full_backward, t1, t2);
  rec(action_kind::optimizer_step, t2, t3);
  const double value = loss.item<double>();
  print_loss(k, value);
  return value;
}

void unsplit_run::report(const training_job& job, const torch::nn::Module& model, std::int64_t microbatch_rows) {
  measured_.num_ranks = 1;
  measured_.run = "unsplit measured";
  std::uint64_t bytes = 0;
  for (const auto& p : model.parameters())
    bytes += static_cast<std::uint64_t>(p.numel()) * p.element_size();
  report_measured(job, measured_, 1, {.param_bytes = {{0, bytes}}, .microbatch_rows = microbatch_rows});
}

void print_step_ms(const std::vector<std::vector<double>>& step_us_per_rank) {
  std::vector<double> slowest; // a step lasts until its slowest rank is done
  for (const auto& rank : step_us_per_rank)
    for (std::size_t k = 0; k < rank.size(); ++k) {
      if (slowest.size() <= k)
        slowest.resize(k + 1, 0.0);
      slowest[k] = std::max(slowest[k], rank[k]);
    }
  if (slowest.size() > 1)
    slowest.erase(slowest.begin()); // the first step warms up
  if (slowest.empty())
    return;
  std::cout << "step_ms " << median_of(std::move(slowest)) / 1000 << "\n" << std::flush;
}

namespace {
// F, I, W and B of each layer on one micro-batch (`inputs`, `target`), one round, after a round to warm up
// when `warm_up`; `out_bytes` gets each layer's output bytes.
struct layer_times {
  std::vector<double> F, I, W, B, U;
  std::vector<std::uint64_t> out_bytes;
};
layer_times time_layers(std::deque<stage_executor>& layers, const std::vector<torch::Tensor>& inputs,
                        const torch::Tensor& target, bool warm_up) {
  const auto n = layers.size();
  layer_times out;
  out.F.assign(n, 0), out.I.assign(n, 0), out.W.assign(n, 0), out.B.assign(n, 0), out.U.assign(n, 0);
  out.out_bytes.assign(n, 0);
  auto timed = [](auto&& run, double* into) {
    const double t0 = now_us();
    run();
    if (into)
      *into = now_us() - t0;
  };
  auto forward_all = [&](bool keep) {
    std::vector<torch::Tensor> x = inputs;
    for (std::size_t k = 0; k < n; ++k) {
      auto& ex = layers[k];
      ex.begin_step();
      timed([&] { x = ex.forward(0, x, ex.is_last() ? target : torch::Tensor()); }, keep ? &out.F[k] : nullptr);
      out.out_bytes[k] = bytes_of(x);
    }
  };
  for (int r = warm_up ? 0 : 1; r <= 1; ++r) {
    const bool keep = r == 1; // round 0 warms up
    forward_all(keep);
    std::vector<torch::Tensor> g;
    for (std::size_t k = n; k-- > 0;)
      timed([&] { g = layers[k].backward_input(0, g); }, keep ? &out.I[k] : nullptr);
    for (std::size_t k = n; k-- > 0;)
      timed([&] { layers[k].backward_weight(0); }, keep ? &out.W[k] : nullptr);
    forward_all(false);
    g.clear();
    for (std::size_t k = n; k-- > 0;)
      timed([&] { g = layers[k].full_backward(0, g); }, keep ? &out.B[k] : nullptr);
    for (std::size_t k = 0; k < n; ++k)
      timed([&] { layers[k].step(); }, keep ? &out.U[k] : nullptr);
  }
  return out;
}

// Per layer and kind, the fastest of the rounds of time_layers: a layer timed alone on this machine
// meets page faults, preemption and cold caches in some rounds and not others (the same layer's B on
// MyNetwork took 0.6 or 1.5 ms at 4 rows in two profiles, a median of 5 or 15 rounds). The profile
// scales the layers to the run's stages at its own size, so what the sizes need alike is the shape.
layer_times fastest_rounds(const std::vector<layer_times>& rounds) {
  layer_times out = rounds.front();
  for (std::size_t k = 0; k < out.F.size(); ++k) {
    auto fastest = [&](std::vector<double> layer_times::*kind) {
      double best = (rounds.front().*kind)[k];
      for (const auto& r : rounds)
        best = std::min(best, (r.*kind)[k]);
      return best;
    };
    out.F[k] = fastest(&layer_times::F), out.I[k] = fastest(&layer_times::I);
    out.W[k] = fastest(&layer_times::W), out.B[k] = fastest(&layer_times::B);
    out.U[k] = fastest(&layer_times::U);
  }
  return out;
}
} // namespace

std::vector<layer_cost> measure_layers(const training_job& job, int repeats) {
  const int L = job.num_layers;
  if (L < 1)
    return {};
  if (repeats < 1)
    throw input_error("measure_layers: repeats must be at least 1 (got " + std::to_string(repeats) + ")");
  // The model split into its L layers, traced (where it is traced) on micro-batches of a batch in
  // `microbatches`, each with the job's optimizer over its parameters (U).
  auto layers_for = [&](int microbatches) {
    auto mods = job.make_stages(make_schedule({.name = "gpipe", .num_ranks = L, .num_microbatches = microbatches}));
    if (static_cast<int>(mods.size()) != L)
      throw input_error("the model was split into " + std::to_string(mods.size()) + " layers, not " + std::to_string(L));
    std::deque<stage_executor> layers; // not movable (an atomic inside): built in place
    for (int i = 0; i < L; ++i) {
      const auto& m = mods[static_cast<std::size_t>(i)];
      const auto params = unique_parameters(*m);
      layers.emplace_back(i, L, m, job.make_optimizer && !params.empty() ? job.make_optimizer(params) : nullptr, job.loss);
    }
    return layers;
  };
  // This replica's slice of step 0's batch, cut into micro-batches as the run cuts it.
  auto [global_inputs, global_target] = job.batch(0);
  const auto inputs = replica_slice(job, global_inputs, 0);
  const torch::Tensor target = global_target.defined() ? replica_slice(job, {global_target}, 0).at(0) : global_target;
  const std::int64_t slice_rows = inputs.at(0).size(0);
  struct size_run {
    std::int64_t rows = 0;
    std::vector<torch::Tensor> inputs;
    torch::Tensor target;
    std::deque<stage_executor>* layers = nullptr;
    std::vector<layer_times> rounds;
  };
  std::deque<std::deque<stage_executor>> built; // the layers of each size that needed its own
  built.push_back(layers_for(job.microbatches));
  auto size_of = [&](int microbatches) {
    size_run z{.inputs = split_tensors(inputs, microbatches).at(0)};
    z.target = target.defined() ? split_tensors({target}, microbatches).at(0).at(0) : target;
    z.rows = z.inputs.at(0).size(0);
    return z;
  };
  std::vector<size_run> sizes{size_of(job.microbatches)}; // the run's own first: the times the profile is at
  std::deque<stage_executor>* shared = &built.front();    // the run's layers, for every size they run
  bool shared_take_other_sizes = true; // until one refuses: then they are traced at the run's shape
  sizes[0].layers = shared;
  // Other sizes a planner may cut the batch into: larger micro-batches down to the whole slice, and two
  // smaller ones. Layers traced at the micro-batch's shape (the compiler's graphs) run no other size:
  // they are made again for it. A size that fails both ways is left out: a planner then extends the
  // nearest ones' line. Which way runs is found with a round of each.
  std::vector<int> counts;
  for (int m = job.microbatches; m > 1;)
    counts.push_back(m = (m + 1) / 2);
  for (std::int64_t m = 2 * static_cast<std::int64_t>(job.microbatches); m <= 4 * job.microbatches && m <= slice_rows; m *= 2)
    counts.push_back(static_cast<int>(m));
  for (int m : counts) {
    size_run z = size_of(m);
    if (std::any_of(sizes.begin(), sizes.end(), [&](const size_run& y) { return y.rows == z.rows; }))
      continue;
    if (shared_take_other_sizes) {
      try {
        time_layers(*shared, z.inputs, z.target, /*warm_up=*/true); // warms the size up too
        z.layers = shared;
      } catch (const std::exception&) {
        // The layers before the one that refused the size hold its micro-batch: the sizes that share
        // them go on with fresh ones.
        shared_take_other_sizes = false;
        std::deque<stage_executor>* fresh = &built.emplace_back(layers_for(job.microbatches));
        for (auto& y : sizes)
          if (y.layers == shared)
            y.layers = fresh;
        shared = fresh;
      }
    }
    if (!z.layers) {
      try {
        time_layers(built.emplace_back(layers_for(m)), z.inputs, z.target, /*warm_up=*/true);
        z.layers = &built.back();
      } catch (const std::exception&) {
        continue;
      }
    }
    sizes.push_back(std::move(z));
    if (static_cast<std::int64_t>(sizes.size()) > limits::max_layer_sizes) // the run's own and as many others
      break;
  }
  // The sizes in turn, a round of each at a time: a burst of load on the machine then falls on all
  // alike. Timed one size after the other, a loaded moment (the test suite beside it) once made GPT's
  // whole batch faster in sum than its micro-batch. A size whose rounds have taken a second, after 3 of
  // them, takes no more: large micro-batches of a large model vary little, and would make the profile
  // last minutes (small ones, where the rounds differ most, take all of theirs). Each round takes the
  // sizes in an order of its own (shuffled, seeded by the round), so that no size keeps one predecessor:
  // the first layer's F meets caches the size before it left cold (GPT's layer 0 at 4 rows, always after
  // 32, was timed slower than at 8).
  constexpr double enough_us = 1e6;
  constexpr int least_rounds = 3;
  std::vector<double> spent(sizes.size(), 0.0);
  std::vector<std::size_t> order(sizes.size());
  for (int r = 0; r < repeats; ++r) {
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937 seeded(static_cast<std::uint32_t>(r));
    if (r > 0) // the first round in order: the run's own size warms its layers up first
      std::shuffle(order.begin(), order.end(), seeded);
    for (const std::size_t i : order) {
      auto& z = sizes[i];
      if (r >= least_rounds && spent[i] >= enough_us)
        continue;
      const double t0 = now_us();
      z.rounds.push_back(time_layers(*z.layers, z.inputs, z.target, /*warm_up=*/r == 0 && i == 0));
      spent[i] += now_us() - t0;
    }
  }
  const layer_times first = fastest_rounds(sizes.front().rounds);
  std::vector<layer_cost> out;
  for (std::size_t k = 0; k < static_cast<std::size_t>(L); ++k) {
    std::string name = (*sizes.front().layers)[k].module().describe(); // what the layer runs ("2:torch::nn::Linear")
    if (name.empty() || name.size() > 120)
      name = "layer" + std::to_string(k);
    layer_cost c{.name = name, .F = first.F[k], .I = first.I[k], .W = first.W[k], .B = first.B[k], .U = first.U[k],
                 .activation_bytes = first.out_bytes[k], .output_bytes = first.out_bytes[k],
                 .param_bytes = (*sizes.front().layers)[k].parameter_bytes()};
    out.push_back(c);
  }
  std::sort(sizes.begin() + 1, sizes.end(), [](const size_run& a, const size_run& b) { return a.rows < b.rows; });
  for (auto z = sizes.begin() + 1; z != sizes.end(); ++z) {
    const layer_times t = fastest_rounds(z->rounds);
    for (std::size_t k = 0; k < out.size(); ++k)
      out[k].other_sizes.push_back({.rows = z->rows, .F = t.F[k], .I = t.I[k], .W = t.W[k], .B = t.B[k]});
  }
  return out;
}

namespace {
// What every rank of a job must have been started with alike, in the order it is reported: the runtime's
// own settings, the example's (seed, batch, model options), then the model the stages were built as and
// its initial parameters (a different seed shows there too, but is named first).
job_settings settings_of(const training_job& job, const schedule& sched,
                         const std::vector<std::shared_ptr<stage_module>>& mods, const std::string& signature) {
  const auto yes_no = [](bool b) { return std::string(b ? "yes" : "no"); };
  job_settings s{{"schedule", job.schedule},
                 {"microbatches", std::to_string(job.microbatches)},
                 {"steps", std::to_string(job.steps)},
                 {"stages-per-rank", std::to_string(sched.shape.stages_per_rank)},
                 {"runtime", job.runtime == runtime_kind::actors ? "actors" : "engine"},
                 {"dp", std::to_string(job.data_parallel)},
                 {"zero1", yes_no(job.zero1)},
                 {"forward-only", yes_no(job.forward_only)},
                 {"checkpoint-every", std::to_string(job.checkpoint_every)},
                 {"resume", yes_no(job.resume)}};
  for (const auto& [field, value] : job.settings) // the example's options; the runtime's above say it first
    if (std::none_of(s.begin(), s.end(), [&](const auto& f) { return f.first == field; }))
      s.emplace_back(field, value);
  s.emplace_back("split signature", signature);
  std::string values;
  for (const auto& m : mods)
    for (const auto& p : m->parameters()) {
      const auto t = p.detach().contiguous();
      values = digest_of(t.data_ptr(), static_cast<std::size_t>(t.nbytes()), values);
    }
  s.emplace_back("initial parameters", values);
  return s;
}

std::vector<const torch::nn::Module*> modules_of(const std::vector<std::shared_ptr<stage_module>>& mods) {
  std::vector<const torch::nn::Module*> all;
  for (const auto& m : mods)
    all.push_back(m.get());
  return all;
}
} // namespace

std::vector<torch::Tensor> replica_slice(const training_job& job, const std::vector<torch::Tensor>& global,
                                         int replica) {
  const int D = std::max(1, job.data_parallel);
  if (D == 1)
    return global;
  const auto rows = global.empty() || global[0].dim() == 0 ? 0 : global[0].size(0);
  if (rows % D != 0)
    throw input_error("a batch of " + std::to_string(rows) + " rows does not split into --dp " + std::to_string(D) +
                      " equal slices");
  return split_tensors(global, D).at(static_cast<std::size_t>(replica));
}

std::vector<torch::Tensor> traced_microbatch(const training_job& job, const std::vector<torch::Tensor>& global_inputs,
                                             int microbatches) {
  return split_tensors(replica_slice(job, global_inputs, 0), microbatches).at(0);
}

int train_pipelined(const training_job& job, const dist_env& env) {
  // pp x dp: WORLD_SIZE = R pipeline ranks x D replicas, replica-major (global rank = d * R + r).
  const int D = job.data_parallel;
  if (D < 1)
    throw input_error("--dp must be at least 1, got " + std::to_string(D));
  if (!(job.timeout_s >= 0.1 && job.timeout_s <= 86400))
    throw input_error("--timeout must be from 0.1 to 86400 s, got " + std::to_string(job.timeout_s));
  if (!(job.heartbeat_s >= 0 && job.heartbeat_s <= 86400))
    throw input_error("--heartbeat-timeout must be from 0 to 86400 s, got " + std::to_string(job.heartbeat_s));
  if (job.checkpoint_every > 0 && job.checkpoint_dir.empty())
    throw input_error("--checkpoint-every needs --checkpoint-dir");
  if (job.resume && job.checkpoint_dir.empty())
    throw input_error("--resume needs --checkpoint-dir");
  if (job.zero1 && D < 2)
    throw input_error("--zero1 " + zero1_needs_replicas("--dp"));
  if (D > 1 && job.in_process > 0)
    throw input_error("--dp " + std::to_string(D) + " needs one process per rank (not --in-process)");
  if (env.world_size % D != 0)
    throw input_error("WORLD_SIZE " + std::to_string(env.world_size) + " is not a multiple of --dp " +
                      std::to_string(D) + " (pipeline ranks x replicas)");
  const int ranks = job.in_process > 0 ? job.in_process : env.world_size / D;
  const int replica = job.in_process > 0 ? 0 : env.rank / ranks;
  const bool first_replica = replica == 0; // writes the files and prints, for all replicas
  auto sched = make_schedule({.name = job.schedule, .num_ranks = ranks, .num_microbatches = job.microbatches,
                              .stages_per_rank = job.stages_per_rank});
  if (job.forward_only)
    sched = forward_only(sched);
  const int S = sched.shape.num_stages();
  auto mods = job.make_stages(sched);
  if (static_cast<int>(mods.size()) != S)
    throw input_error("the model was split into " + std::to_string(mods.size()) + " stages, schedule '" +
                      job.schedule + "' needs " + std::to_string(S));
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(job.timeout_s * 1000));
  std::unique_ptr<gloo_group> transport; // this replica's pipeline ranks
  std::unique_ptr<gloo_group> replicas;  // with --dp: the D replicas of this pipeline rank
  c10::intrusive_ptr<c10d::Store> job_store; // with --dp: the job's, which both groups share
  if (job.in_process == 0 && D == 1) {
    transport = std::make_unique<gloo_group>(env, timeout);
  } else if (job.in_process == 0) {
    const auto store = job_store = connect_store(env, timeout);
    const int r = env.rank % ranks;
    transport = std::make_unique<gloo_group>(store, "pp" + std::to_string(replica) + "/", r, ranks, env.master_addr,
                                             timeout);
    replicas = std::make_unique<gloo_group>(store, "dp" + std::to_string(r) + "/", replica, D, env.master_addr,
                                            timeout);
  }
  const int my_rank = transport ? transport->rank() : -1;
  const bool checkpointing = !job.checkpoint_dir.empty();
  const bool sharded_state = job.zero1 && D > 1 && !job.forward_only; // each replica checkpoints its own
  if (checkpointing && job.forward_only)
    throw input_error("--checkpoint-dir: inference has nothing to checkpoint");
  const std::string signature = model_signature(modules_of(mods));
  // Before anything runs, every rank checks that all were started alike, then beats.
  std::unique_ptr<heartbeat> beat;
  store_access job_access; // the job's store, every process of every replica: the settings, checkpoints
  if (job.in_process == 0) {
    if (D == 1) {
      job_access = {[&](const std::string& k, const std::string& v) { transport->store_set(k, v); },
                    [&](const std::string& k) { return transport->store_get(k); }};
    } else {
      job_access = {[&](const std::string& k, const std::string& v) { job_store->set(k, std::vector<uint8_t>(v.begin(), v.end())); },
                    [&](const std::string& k) {
                      const auto v = job_store->get(k);
                      return std::string(v.begin(), v.end());
                    }};
    }
    const std::string verdict = agree_settings(job_access, env.rank, env.world_size, settings_of(job, sched, mods, signature));
    if (!verdict.empty())
      exit_now("rank " + std::to_string(env.rank) + ": " + verdict, 2);
    beat = std::make_unique<heartbeat>(env, std::chrono::milliseconds(static_cast<std::int64_t>(job.heartbeat_s * 1000)));
  }
  if (job.microbatches > 1 && my_rank <= 0) // every rank built every stage: one warns, once
    for (int s = 0; s < S; ++s)
      if (mods[static_cast<std::size_t>(s)]->uses_batch_statistics()) {
        say("warning: stage " + std::to_string(s) +
            " normalises with batch statistics (BatchNorm in training mode): each of the " +
            std::to_string(job.microbatches) +
            " micro-batches uses its own and updates the running ones, which equals gradient accumulation over "
            "micro-batches, not one step on the whole batch");
        break;
      }
  if (!job.export_dir.empty() && my_rank <= 0 && first_replica) { // every rank built every stage: one writes the start
    export_job(job, parameters_by_name(modules_of(mods)), S, sched.shape.stages_per_rank);
  }
  std::vector<std::shared_ptr<stage_executor>> stages(static_cast<std::size_t>(S));
  std::vector<std::shared_ptr<torch::optim::Optimizer>> optimizers(static_cast<std::size_t>(S)); // checkpointed
  std::map<int, std::uint64_t> param_bytes;
  for (int s = 0; s < S; ++s) {
    if (transport && sched.shape.rank_of(s) != my_rank)
      continue; // every rank built all stages the same way and keeps its own
    auto& m = mods[static_cast<std::size_t>(s)];
    std::shared_ptr<torch::optim::Optimizer> optimizer;
    if (!job.forward_only && job.zero1 && replicas) {
      auto sharded = std::make_shared<zero1_optimizer>(unique_parameters(*m), *replicas, job.make_optimizer);
      say("rank " + std::to_string(env.rank) + ": stage " + std::to_string(s) + ": ZeRO-1 optimizer state for " +
          std::to_string(sharded->slice_size()) + " of " + std::to_string(sharded->total_size()) + " parameters");
      optimizer = sharded;
    } else if (!job.forward_only) {
      optimizer = job.make_optimizer(unique_parameters(*m));
    }
    optimizers[static_cast<std::size_t>(s)] = optimizer;
    stages[static_cast<std::size_t>(s)] = std::make_shared<stage_executor>(s, S, m, optimizer, job.loss);
    stages[static_cast<std::size_t>(s)]->set_forward_only(job.forward_only);
    param_bytes[s] = stages[static_cast<std::size_t>(s)]->parameter_bytes();
  }
  std::unique_ptr<tied_sync> tied;
  std::map<int, std::vector<torch::Tensor>> tied_copies; // per local holder stage
  if (job.tied_groups) {
    auto groups = job.tied_groups();
    std::map<int, std::map<std::size_t, torch::Tensor>> local;
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (int s : groups[g].stages) {
        if (!stages[static_cast<std::size_t>(s)])
          continue;
        auto named = mods[static_cast<std::size_t>(s)]->named_parameters();
        auto* p = named.find(groups[g].name);
        if (p == nullptr)
          throw input_error("tied weight '" + groups[g].name + "' is not a parameter of stage " + std::to_string(s));
        local[s][g] = *p;
        tied_copies[s].push_back(*p);
      }
    if (!groups.empty()) {
      tied = std::make_unique<tied_sync>(groups, local, sched.shape, transport.get());
      for (auto& [s, m] : local)
        stages[static_cast<std::size_t>(s)]->set_step_gate(
            [t = tied.get()](int stage, std::function<void()> step) { t->before_step(stage, std::move(step)); });
    }
  }
  // With --dp: a stage's gradients averaged over its D replicas before each U, in one bucket (with
  // ZeRO-1 only the slice its optimizer keeps, and tied copies whole); where the stage holds a tied copy,
  // before the copies' sum within the replica, so that sum spans the replicas too.
  std::vector<std::pair<int, std::unique_ptr<replica_grad_sync>>> grad_syncs; // by stage
  if (replicas && !job.forward_only) {
    for (int s = 0; s < S; ++s) {
      auto& ex = stages[static_cast<std::size_t>(s)];
      if (!ex)
        continue;
      std::optional<optimizer_shard> shard;
      if (const auto* sharded = dynamic_cast<const zero1_optimizer*>(optimizers[static_cast<std::size_t>(s)].get()))
        shard = sharded->part();
      auto* sync = grad_syncs
                       .emplace_back(s, std::make_unique<replica_grad_sync>(
                                            *replicas, unique_parameters(*mods[static_cast<std::size_t>(s)]),
                                            job.microbatches, job.grad_sync, shard,
                                            shard ? tied_copies[s] : std::vector<torch::Tensor>{}))
                       .second.get();
      ex->set_after_weight_grads([sync](int) { sync->weight_grads_in(); });
      // A tied copy's gradient is averaged over the replicas first, then summed with the other copies in
      // the replica: the same sum either way, and the all-reduce may have started at the last backward,
      // before that sum (overlap).
      if (tied && tied->holds(s))
        ex->set_step_gate([t = tied.get(), sync](int stage, std::function<void()> step) {
          sync->before_step([t, stage, step = std::move(step)] { t->before_step(stage, step); });
        });
      else
        ex->set_step_gate([sync](int, std::function<void()> step) { sync->before_step(step); });
    }
  }
  // The same stage actors as the simulator (runtime "actors"), or the plain engine (runtime "engine").
  caf::actor_system_config cfg;
  configure_for_training(cfg, 2, transport ? std::chrono::microseconds(0) : in_process_poll);
  caf::actor_system sys{cfg};
  std::unique_ptr<tensor_channel> channel;
  if (transport)
    channel = std::make_unique<tensor_channel>(*transport);
  // Declared before the runtimes, which forward to it: they go first.
  std::unique_ptr<live_job_feed> live;
  if (!job.live.empty() && first_replica) { // the first replica's pipeline: the others run the same schedule
    live = std::make_unique<live_job_feed>(job.live, std::max(my_rank, 0), transport.get());
    if (my_rank <= 0)
      say(live->port() >= 0 ? "live: publishing on 127.0.0.1:" + std::to_string(live->port())
                            : "live: writing to " + job.live);
  }
  std::unique_ptr<pipeline_engine> engine;
  std::unique_ptr<step_driver> actors;
  switch (job.runtime) {
  case runtime_kind::engine:
    engine = std::make_unique<pipeline_engine>(sched, stages, transport.get());
    break;
  case runtime_kind::actors:
    actors = std::make_unique<step_driver>(sys, sched, stages, cpu_backend(channel.get()), timeout, [&](const failure& f) {
      if (transport) // peers wait on this process's transfers until it exits: report and exit now
        exit_now(f.message, f.kind == failure_kind::peer_lost || f.kind == failure_kind::timeout ? lost_peer_exit_status : 1);
    });
    break;
  }
  if (live && actors)
    actors->forward_events_to([l = live.get()](const trace_event& e) { l->publish(e); },
                              [l = live.get()](const memory_sample& m) { l->publish(m); });
  // The plain loop has no log to forward: its events and samples go after each step.
  std::size_t engine_published = 0, engine_samples = 0;
  std::size_t sums_published = 0; // steps whose REDUCE_GRADs went to the live feed
  // The steps' actions, and with --dp each stage's collectives over its replicas as its REDUCE_GRAD.
  auto reduce_grads = [&](std::size_t from_step) {
    std::vector<trace_event> out;
    for (const auto& [s, sync] : grad_syncs)
      for (std::size_t k = from_step; k < sync->windows().size(); ++k) {
        const reduce_grad_window& w = sync->windows()[k];
        out.push_back({.rank = sched.shape.rank_of(s), .act = {s, action_kind::reduce_grad, no_microbatch},
                       .start_us = w.posted_us, .end_us = w.done_us, .bytes = w.bytes, .source = event_source::measured});
      }
    return out;
  };
  auto events = [&] {
    trace t = engine ? engine->events() : actors->events();
    const auto sums = reduce_grads(0);
    t.events.insert(t.events.end(), sums.begin(), sums.end());
    return t;
  };
  auto activations = [&] { return engine ? engine->activation_bytes() : actors->activation_bytes(); };
  // The profile's links, measured before the steps so that nothing else is on the wire.
  std::vector<link_cost> links;
  std::optional<link_class> send_posting;
  std::optional<link_class> replica_link; // with --dp: what the replicas' all-reduces run on
  if (!job.profile_file.empty() && channel) {
    auto probed = probe_links(*channel);
    links = std::move(probed.links);
    send_posting = probed.send_posting;
  }
  if (!job.profile_file.empty() && replicas && !job.forward_only) {
    // Up to the largest stage this rank sums (the replicas of a rank hold the same stages): a fit of
    // smaller sizes only, out of cache, gave MyNetwork's 6.3 MB all-reduce half its time in the run.
    link_probe_options probe;
    std::uint64_t biggest = 0;
    for (const auto& [s, bytes] : param_bytes)
      biggest = std::max(biggest, bytes);
    if (biggest > probe.sizes.back())
      probe.sizes.push_back(std::min<std::uint64_t>(biggest, 64u << 20));
    replica_link = probe_replica_link(*replicas, probe);
  }
  // Resume: this rank's stages from the newest complete checkpoint (any schedule's, over this split).
  int first_step = 0;
  if (checkpointing && (job.resume || env.restart_count > 0)) {
    if (const auto found = latest_checkpoint(job.checkpoint_dir)) {
      check_split(job.checkpoint_dir, *found, S, signature);
      if (found->step >= job.steps)
        throw input_error(checkpoint_step_dir(job.checkpoint_dir, found->step) +
                          ": the checkpoint has run " + std::to_string(found->step) + " steps and --steps is " +
                          std::to_string(job.steps) + ": nothing is left to run (a larger --steps continues)");
      bool rng_restored = false;
      for (int s = 0; s < S; ++s)
        if (stages[static_cast<std::size_t>(s)]) {
          load_stage_shard(job.checkpoint_dir, *found, s, *mods[static_cast<std::size_t>(s)],
                           optimizers[static_cast<std::size_t>(s)].get(), !rng_restored, sharded_state ? replica : -1);
          rng_restored = true;
        }
      first_step = found->step;
      if (my_rank <= 0 && first_replica)
        say("resumed from " + checkpoint_step_dir(job.checkpoint_dir, first_step) + " (written by schedule " +
            found->schedule + "): steps " + std::to_string(first_step) + ".." + std::to_string(job.steps - 1));
    } else if (my_rank <= 0 && first_replica) {
      say("no checkpoint in " + job.checkpoint_dir + " yet: starting at step 0");
    }
  }
  // Writes this rank's shards of the checkpoint before step `next`; rank 0 commits it once all are in.
  // The first replica writes for all, unless each keeps its own optimizer shard (ZeRO-1): then every
  // process writes. Each reports through the job's store.
  auto checkpoint = [&](int next) {
    const double t0 = now_us();
    std::vector<checkpoint_shard> shards;
    for (int s = 0; s < S; ++s)
      if (stages[static_cast<std::size_t>(s)])
        shards.push_back(save_stage_shard(job.checkpoint_dir, next, s, *mods[static_cast<std::size_t>(s)],
                                          optimizers[static_cast<std::size_t>(s)].get(), sharded_state ? replica : -1));
    const double written_ms = (now_us() - t0) / 1000;
    const std::string key = "pippy/checkpoint/" + std::to_string(next) + "/";
    const int writer = sharded_state ? env.rank : my_rank, writers = sharded_state ? env.world_size : ranks;
    if (transport && writer != 0) {
      job_access.set(key + std::to_string(writer), shards_to_json(shards).dump());
      return;
    }
    for (int r = 1; transport && r < writers; ++r) { // the others' shards, as they report them
      const std::string source = (sharded_state ? "process " : "rank ") + std::to_string(r) + "'s checkpoint shards";
      try {
        for (auto& shard : shards_from_json(parse_json(job_access.get(key + std::to_string(r)), source), S))
          shards.push_back(std::move(shard));
      } catch (const std::exception& e) { // nlohmann's type errors too
        throw input_error(source + ": " + e.what());
      }
    }
    std::sort(shards.begin(), shards.end(),
              [](const auto& a, const auto& b) { return std::tie(a.stage, a.replica) < std::tie(b.stage, b.replica); });
    std::uint64_t bytes = 0;
    for (const auto& sh : shards)
      bytes += sh.bytes;
    commit_checkpoint(job.checkpoint_dir,
                      {.step = next, .num_stages = S, .model = signature, .schedule = job.schedule, .shards = shards},
                      job.checkpoint_keep);
    std::ostringstream line;
    line << "checkpoint " << checkpoint_step_dir(job.checkpoint_dir, next) << ": " << shards.size() << " shard(s), "
         << bytes << " bytes; rank 0 wrote its own in " << std::fixed << std::setprecision(1) << written_ms
         << " ms and committed all in " << (now_us() - t0) / 1000 << " ms";
    say(line.str());
  };
  std::int64_t rows = 0; // of one micro-batch, for the profile
  std::vector<double> step_us; // this rank's wall time of each step
  for (int k = first_step; k < job.steps; ++k) {
    if (k == job.fail_step && my_rank == job.fail_rank && env.restart_count == 0) {
      say("rank " + std::to_string(my_rank) + ": " + (job.fail_signal == SIGSTOP ? "stopping" : "killing") +
          " myself at step " + std::to_string(k) + " (--fail-rank)");
      std::raise(job.fail_signal);
    }
    auto [inputs, target] = job.batch(k);
    if (D > 1) { // this replica's slice of the global batch
      inputs = replica_slice(job, inputs, replica);
      if (target.defined())
        target = replica_slice(job, {target}, replica).at(0);
    }
    if (!inputs.empty() && inputs[0].dim() > 0)
      rows = inputs[0].size(0) / std::max(1, job.microbatches);
    if (job.time_steps && transport)
      transport->barrier();
    const double t0 = now_us();
    if (live)
      live->step_started(k, t0);
    const torch::Tensor want = job.forward_only ? torch::Tensor() : target;
    std::optional<double> loss;
    if (k + 1 < job.steps) { // the transport may post the next step's first receives early
      if (engine)
        engine->another_step_follows();
      if (actors)
        actors->another_step_follows();
    }
    if (engine && transport) {
      try {
        loss = engine->step(inputs, want);
      } catch (const peer_error&) {
        throw;
      } catch (const std::exception& e) { // as the actors do: peers wait on this process until it exits
        exit_now(e.what(), dynamic_cast<const input_error*>(&e) ? 2 : 1);
      }
    } else {
      loss = engine ? engine->step(inputs, want) : actors->step(inputs, want);
    }
    if (job.forward_only && stages[static_cast<std::size_t>(S - 1)] && job.on_outputs) {
      std::vector<std::vector<torch::Tensor>> per_mb = stages[static_cast<std::size_t>(S - 1)]->take_outputs();
      job.on_outputs(k, merge_outputs(per_mb));
    } else if (loss && !job.forward_only) {
      if (replicas) { // the global batch's loss: the replicas' mean
        std::vector<torch::Tensor> l{torch::tensor({*loss}, torch::kDouble)};
        replicas->allreduce_sum(l);
        loss = l[0].item<double>() / D;
      }
      if (first_replica)
        print_loss(k, *loss);
    }
    step_us.push_back(now_us() - t0);
    if (checkpointing && (first_replica || sharded_state) && job.checkpoint_every > 0 && (k + 1) % job.checkpoint_every == 0)
      checkpoint(k + 1);
    if (live && engine) {
      const trace t = engine->events();
      for (; engine_published < t.events.size(); ++engine_published)
        live->publish(t.events[engine_published]);
      for (; engine_samples < t.memory.size(); ++engine_samples)
        live->publish(t.memory[engine_samples]);
    }
    if (live && !grad_syncs.empty()) { // the collectives of a step are over by its end: each sync has its window
      for (const trace_event& e : reduce_grads(sums_published))
        live->publish(e);
      sums_published = static_cast<std::size_t>(k - first_step + 1);
    }
  }
  if (live) // what publishing took, on the threads that run in the pipeline's idle time
    say("live: rank " + std::to_string(std::max(my_rank, 0)) + "'s feed threads used " +
        std::to_string(static_cast<long long>(live->threads_cpu_us())) + " us of CPU over " +
        std::to_string(job.steps - first_step) + " steps");
  if (!job.export_dir.empty() && first_replica) {
    std::vector<const torch::nn::Module*> mine;
    for (int s = 0; s < S; ++s)
      if (stages[static_cast<std::size_t>(s)])
        mine.push_back(mods[static_cast<std::size_t>(s)].get());
    export_final(job, std::max(my_rank, 0), parameters_by_name(mine));
  }
  // What a transfer arriving on a rank takes from its compute: probed after the steps, with the wire
  // quiet, at the largest of the run's boundary tensors up to 4 MiB (160 of them per direction: a larger
  // size would make the probe outlast the run). Every replica probes its own pipeline at once, so that
  // ranks sharing cores share them as in the steps; the first replica's result is reported.
  std::optional<double> arrival_cost;
  if (!job.profile_file.empty() && channel) {
    std::uint64_t biggest = 0;
    for (const auto& [stage, bytes] : activations())
      biggest = std::max(biggest, bytes);
    arrival_probe_options probe;
    if (biggest > 0) // else (a rank without outputs) the default; the ranks agree on the largest
      probe.bytes = std::min<std::uint64_t>(biggest, 4u << 20);
    arrival_cost = probe_arrival_cost(*channel, probe);
  }
  training_job ran = job; // what the reports cover: the steps this run ran (after a resume, not all)
  ran.steps = job.steps - first_step;
  // Layers one by one, in the process that writes the profile.
  std::vector<layer_cost> layer_costs;
  // Its peers wait meanwhile (within the c10d timeout); a layer that cannot be measured leaves the profile
  // without layers rather than failing the run.
  if (!job.profile_file.empty() && my_rank <= 0 && first_replica && !job.forward_only) {
    try {
      layer_costs = measure_layers(job);
    } catch (const std::exception& e) {
      say(std::string("warning: --profile: the layers were not measured: ") + e.what());
    }
  }
  auto first_layers = [&] { // the run's split in the measured layers, for the profile
    return !layer_costs.empty() && job.stage_first_layers ? job.stage_first_layers(S) : std::vector<int>{};
  };
  if (!transport) {
    report_measured(ran, events(), S,
                    {.activation_bytes = activations(), .param_bytes = param_bytes, .layers = layer_costs,
                     .stage_first_layers = first_layers(), .microbatch_rows = rows});
    if (job.time_steps)
      print_step_ms({step_us});
    return 0;
  }
  if (beat) // before the last barrier: a rank past it may exit, and must not be taken for a hung one
    beat->finished();
  // Every rank of every replica reports under its global rank (replica x R + rank: the mesh's, which the
  // simulator's pp x dp runs too), through the job's store; the first replica's rank 0 gathers them all.
  // The replicas are measured, not assumed alike: twins sharing a CPU post their all-reduce apart.
  trace mine = events();
  const int mesh_base = replica * ranks;
  for (auto& e : mine.events) {
    e.rank += mesh_base;
    if (e.peer >= 0)
      e.peer += mesh_base;
  }
  for (auto& m : mine.memory)
    m.rank += mesh_base;
  const std::string run_name = mine.run;
  job_access.set("pippy/report/" + std::to_string(mesh_base + my_rank),
                 to_report_json(rank_report{std::move(mine), activations(), param_bytes, step_us, this_process_cpus()}));
  if (!first_replica) {
    transport->barrier();
    return 0;
  }
  if (my_rank == 0) {
    trace all;
    all.num_ranks = ranks * D;
    all.replicas = D;
    all.run = run_name;
    std::map<int, std::uint64_t> act, params;
    std::vector<std::vector<double>> times;
    std::vector<rank_cpus> where;
    for (int r = 0; r < ranks * D; ++r) {
      rank_report got = parse_report_json(job_access.get("pippy/report/" + std::to_string(r)),
                                          "rank " + std::to_string(r) + "'s report");
      all.events.insert(all.events.end(), got.measured.events.begin(), got.measured.events.end());
      all.memory.insert(all.memory.end(), got.measured.memory.begin(), got.measured.memory.end());
      act.merge(got.activation_bytes);
      params.merge(got.param_bytes);
      times.push_back(std::move(got.step_us));
      where.push_back(std::move(got.where));
    }
    report_measured(ran, all, S,
                    {.activation_bytes = act, .param_bytes = params, .links = links, .send_posting = send_posting,
                     .replica_link = replica_link,
                     // c10d's Gloo reduce-scatters by a whole all-reduce (ZeRO-1's measured windows
                     // were an all-reduce's, not half)
                     .replica_reduce_scatter_by_allreduce = replica_link.has_value(),
                     .arrival_cost_us = arrival_cost,
                     .data_parallel = {.replicas = D, .sync = job.grad_sync, .zero1 = job.zero1},
                     .shared_cpus = ranks_sharing_cpus(where), // the mesh's ranks
                     .layers = layer_costs, .stage_first_layers = first_layers(), .microbatch_rows = rows});
    if (job.time_steps)
      print_step_ms(times);
  }
  transport->barrier();
  return 0;
}

int run_example(const training_job& job, int threads, const std::function<int()>& unsplit) {
  // c10d logs each failed store call as a warning with a whole backtrace; ranks say what failed in one line.
  // TORCH_CPP_LOG_LEVEL, where set, decides instead.
  if (std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr)
    FLAGS_caffe2_log_level = std::max(FLAGS_caffe2_log_level, 2); // errors only
  try {
    const auto env = read_dist_env();
    if (job.bind_cores) { // before any thread starts: they inherit the binding
      if (job.in_process > 0)
        throw input_error("--bind-cores binds one rank per process (not --in-process)");
      bind_to_local_share(env);
    }
    at::set_num_threads(threads);
    if (env.world_size == 1 && job.in_process == 0)
      return unsplit();
    return train_pipelined(job, env);
  } catch (const peer_error& e) {
    say(std::string("error: ") + e.what());
    std::_Exit(lost_peer_exit_status); // c10d objects may block in their destructors once a peer is gone
  } catch (const input_error& e) {
    say(std::string("error: ") + e.what());
    return 2;
  } catch (const std::exception& e) {
    say(std::string("error: ") + e.what());
    std::_Exit(1);
  }
}

} // namespace pippy
