// pippy sim: simulate a schedule's actors in virtual time and report makespan, bubbles and memory.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/simulator/simulator.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/live.hpp"

namespace pippy::cli {

command add_sim_command(CLI::App& app) {
  struct options {
    schedule_options gen{.name = "1f1b", .num_ranks = 4, .num_microbatches = 8};
    std::string from, cost, trace_path, live;
    std::vector<std::string> cost_files;
    double live_wait_s = 0, pace = 0;
    link_options links;
    long long activation_bytes = -1, memory_cap = 0, batch = 0;
    double jitter = 0;
    std::uint64_t seed = 0;
    bool json = false, no_optimizer_step = false, zero1 = false;
    int dp = 1;
    grad_sync_mode dp_sync = grad_sync_mode::overlap;
    int noise_samples = default_noise_samples;
  };
  auto o = std::make_shared<options>();
  auto* sub = app.add_subcommand("sim", "Simulate a schedule in virtual time (times in microseconds)");
  sub->add_option("--schedule", o->gen.name, "Schedule name (see `pippy schedule --help`)")->capture_default_str();
  sub->add_option("--from", o->from, "Simulate a schedule from a CSV or JSON file instead");
  sub->add_option("--ranks", o->gen.num_ranks, "Pipeline ranks R")->capture_default_str();
  sub->add_option("--microbatches", o->gen.num_microbatches, "Micro-batches M")->capture_default_str();
  sub->add_option("--stages-per-rank", o->gen.stages_per_rank, "Stages per rank V");
  auto* cost = sub->add_option("--cost", o->cost, "Uniform costs, e.g. F=1,B=2 or F=1,I=1,W=1,U=0 (default F=1,B=2)");
  auto* cost_file = sub->add_option("--cost-file", o->cost_files,
                                    "JSON cost file {\"stages\":[{\"F\",\"I\",\"W\",\"B\",\"U\",\"activation_bytes\","
                                    "\"param_bytes\"}...]}; with \"device\":{\"peak_flops\",\"memory_bandwidth\"}, stages may give "
                                    "\"forward_flops\"/\"forward_bytes\" (roofline); several profiles of one configuration: "
                                    "each time the median of theirs")
                        ->type_name("FILE...");
  cost->excludes(cost_file);
  add_link_options(*sub, o->links);
  sub->add_option("--activation-bytes", o->activation_bytes, "Activation bytes per stage and micro-batch (overrides the cost file)")
      ->check(CLI::Range(0LL, static_cast<long long>(limits::max_bytes)));
  sub->add_option("--memory-cap", o->memory_cap, "Memory cap per rank in bytes (0 = none): overflow is reported as OOM")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--jitter", o->jitter, "Scale each compute time by 1 + jitter*u, u in [-1,1], seeded")
      ->check(within(0, 1));
  sub->add_option("--seed", o->seed, "Seed of the jitter and of the first draw of the cost file's noise");
  sub->add_option("--noise-samples", o->noise_samples,
                  "With a cost file that has step-to-step noise (a profile's \"noise\"): at most this many draws averaged into "
                  "expected_step_us (fewer once its standard error is within 0.2%)")
      ->check(CLI::Range(1, static_cast<int>(limits::max_noise_samples)))
      ->capture_default_str();
  sub->add_option("--trace", o->trace_path, "Write a Chrome trace (Perfetto) to this file");
  sub->add_option("--live", o->live,
                  "Publish every event and memory sample as it happens (JSON lines) for `pippy-view --live`: a TCP "
                  "port on 127.0.0.1 (0 = any free port), or a file when the argument ends in .jsonl or contains '/'");
  sub->add_option("--live-wait-s", o->live_wait_s, "With --live PORT: wait up to this many seconds for a viewer before starting")
      ->check(within(0, 86400));
  sub->add_option("--pace", o->pace,
                  "Play the simulation at this many virtual microseconds per wall-clock microsecond (0 = as fast as possible)")
      ->check(within(0, 1e12));
  sub->add_flag("--json", o->json, "Print one JSON object");
  sub->add_flag("--no-optimizer-step", o->no_optimizer_step, "Leave out the U action of each stage");
  sub->add_option("--dp", o->dp,
                  "Data-parallel replicas of the pipeline: before each U the stage's param_bytes are all-reduced over "
                  "them (ring, on the link between ranks R apart)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--dp-sync", o->dp_sync, "When that all-reduce starts: overlap (at the stage's last backward) or at-step")
      ->transform(one_of(std::map<std::string, grad_sync_mode>{{"overlap", grad_sync_mode::overlap}, {"at-step", grad_sync_mode::at_step}}))
      ->type_name("overlap|at-step")
      ->default_str("overlap");
  sub->add_flag("--zero1", o->zero1,
                "With --dp: ZeRO-1, a reduce-scatter instead of that all-reduce, then U updates 1/DP of the parameters and "
                "all-gathers them; each replica keeps 1/DP of the optimizer state");
  sub->add_option("--batch", o->batch,
                  "Rows per step (0 = even micro-batches): micro-batches get torch.tensor_split sizes and their costs "
                  "and activation bytes scale with their rows (the costs are for batch/M rows)");
  return {sub, [o, sub] {
    o->gen.optimizer_steps = !o->no_optimizer_step;
    const schedule s = schedule_for(*sub, o->gen, o->from); // simulate() validates
    const int S = s.shape.num_stages();
    sim::sim_options so;
    if (!o->cost_files.empty()) {
      so.costs = load_profiles(o->cost_files).median;
      const std::string source = profiles_named(o->cost_files);
      so.costs.validate(S, source);
      so.costs.validate_links(s.shape.num_ranks, source, s.shape.num_ranks * std::max(1, o->dp)); // --dp: the mesh's ranks
    } else {
      so.costs = uniform_costs(S, o->cost.empty() ? stage_cost{} : parse_cost_spec(o->cost));
    }
    if (o->activation_bytes < -1 || o->memory_cap < 0)
      throw input_error(o->memory_cap < 0 ? "--memory-cap must be non-negative" : "--activation-bytes must be non-negative");
    if (o->activation_bytes >= 0)
      for (auto& c : so.costs.stages) {
        c.activation_bytes = static_cast<std::uint64_t>(o->activation_bytes);
        c.weight_input_bytes = c.activation_bytes / 2;
      }
    so.costs.jitter = o->jitter;
    so.costs.seed = o->seed;
    if (o->batch < 0)
      throw input_error("--batch must be non-negative (got " + std::to_string(o->batch) + ")");
    if (o->batch > 0)
      so.costs.scale_by_rows(o->batch, s.shape.num_microbatches);
    so.links = make_link_model(o->links);
    so.memory.cap_bytes = static_cast<std::uint64_t>(o->memory_cap);
    if (!(o->pace >= 0))
      throw input_error("--pace must be non-negative (got " + std::to_string(o->pace) + ")");
    if (!(o->live_wait_s >= 0))
      throw input_error("--live-wait-s must be non-negative (got " + std::to_string(o->live_wait_s) + ")");
    so.pace = o->pace;
    so.noise_samples = o->noise_samples;
    if (o->zero1 && o->dp < 2)
      throw input_error("--zero1 " + zero1_needs_replicas("--dp"));
    so.data_parallel = {.replicas = o->dp, .sync = o->dp_sync, .zero1 = o->zero1};
    if (o->dp > 1 && o->no_optimizer_step)
      throw input_error("--dp " + std::to_string(o->dp) + " models the all-reduce before each U: drop --no-optimizer-step");
    std::unique_ptr<live_publisher> pub;
    if (!o->live.empty()) {
      const live_publisher_options lo = live_target(o->live);
      const bool file = is_file_target(lo);
      pub = std::make_unique<live_publisher>(lo); // throws input_error naming the port or file
      if (file)
        std::fprintf(stderr, "live: writing to %s\n", o->live.c_str());
      else
        std::fprintf(stderr, "live: publishing on %s:%d\n", lo.host.c_str(), pub->port());
      std::fflush(stderr);
      if (!file && o->live_wait_s > 0) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o->live_wait_s);
        while (pub->clients() == 0 && std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::fprintf(stderr, pub->clients() > 0 ? "live: viewer connected\n" : "live: no viewer yet, starting anyway\n");
      }
      live_publisher* p = pub.get();
      so.on_event = [p](const trace_event& e) { p->publish(e); };
      so.on_memory = [p](const memory_sample& m) { p->publish(m); };
    }
    const bool tty = isatty(fileno(stderr)) != 0;
    if (tty) {
      const double expected = static_cast<double>(add_communication(s).num_actions()) + 1.0;
      so.on_progress = [expected](std::size_t events, double now) {
        const int pct = static_cast<int>(std::min(100.0, 100.0 * static_cast<double>(events) / expected));
        std::string bar(static_cast<std::size_t>(pct / 4), '#');
        bar.resize(25, ' ');
        std::fprintf(stderr, "\r[%s] %3d%%  t=%.1f us", bar.c_str(), pct, now);
        std::fflush(stderr);
      };
    }
    const sim::sim_result r = sim::simulate(s, so);
    if (tty && r.events >= so.progress_every)
      std::fprintf(stderr, "\r%60s\r", "");
    if (pub) {
      for (const auto& mk : r.timeline.markers) // the OOM marker, after the events that led to it
        pub->publish_line(to_json_line(mk));
      pub->flush();
      if (pub->dropped() > 0)
        std::fprintf(stderr, "live: %llu lines published, %llu dropped (the queue was full)\n",
                     static_cast<unsigned long long>(pub->published()), static_cast<unsigned long long>(pub->dropped()));
    }
    if (!o->trace_path.empty())
      save_chrome_trace(r.timeline, o->trace_path);
    // One count of actions everywhere (the trace's and the viewer's): compute actions, and transfers, each a
    // send and its receive; with --dp every replica's (the mesh's ranks: replica x R + rank).
    const int replicas = so.data_parallel.replicas;
    std::size_t compute_actions = 0;
    for (const auto& list : s.ranks)
      for (const auto& a : list)
        compute_actions += is_compute(a.kind) ? static_cast<std::size_t>(replicas) : 0;
    const std::size_t transfers = r.actions > compute_actions ? (r.actions - compute_actions) / 2 : 0;
    if (o->json) {
      nlohmann::json ranks = nlohmann::json::array();
      for (const auto& rs : r.ranks)
        ranks.push_back({{"rank", rs.rank}, {"busy_us", rs.busy_us}, {"idle_us", rs.idle_us},
                         {"bubble_fraction", rs.bubble_fraction}, {"peak_activations", rs.peak_activations},
                         {"peak_memory_bytes", rs.peak_memory_bytes}, {"first_start_us", rs.first_start_us},
                         {"end_us", rs.end_us}});
      nlohmann::json j{{"schedule", s.name},
                       {"ranks", s.shape.num_ranks},
                       {"replicas", replicas},
                       {"stages_per_rank", s.shape.stages_per_rank},
                       {"microbatches", s.shape.num_microbatches},
                       {"makespan_us", r.makespan_us},
                       {"step_us", r.step_us},
                       {"expected_step_us", r.expected_step_us}, // the mean over noise draws, when the costs have noise
                       {"expected_step_error_us", r.expected_step_error_us},
                       {"noise_samples", r.noise_samples},
                       {"bubble_fraction", r.bubble_fraction},
                       {"steady_bubble_fraction", r.steady_bubble_fraction},
                       {"actions", r.actions}, // what ran: compute, sends and receives
                       {"compute_actions", compute_actions},
                       {"transfers", transfers},
                       {"completed", r.completed},
                       {"per_rank", ranks}};
      j["oom"] = r.oom ? nlohmann::json{{"rank", r.oom->rank}, {"action", to_string(r.oom->at)},
                                        {"needed_bytes", r.oom->needed_bytes}, {"cap_bytes", r.oom->cap_bytes},
                                        {"t_us", r.oom->t_us}, {"message", r.oom->message()}}
                       : nlohmann::json(nullptr);
      std::cout << j.dump(2) << "\n";
    } else {
      std::printf("%s: R=%d V=%d M=%d%s, %zu compute actions, %zu transfers\n", s.name.c_str(), s.shape.num_ranks,
                  s.shape.stages_per_rank, s.shape.num_microbatches,
                  replicas > 1 ? (" x " + std::to_string(replicas) + " replicas (rank = replica x R + its rank)").c_str() : "",
                  compute_actions, transfers);
      std::printf("makespan %.3f us, bubble fraction %.4f\n", r.makespan_us, r.bubble_fraction);
      if (r.noise_samples > 0)
        std::printf("expected step %.3f us (standard error %.3f) over %d draws of the cost file's step-to-step noise "
                    "(this timeline: one draw, step %.3f us)\n",
                    r.expected_step_us, r.expected_step_error_us, r.noise_samples, r.step_us);
      std::printf("%5s %12s %12s %8s %10s %16s\n", "rank", "busy_us", "idle_us", "bubble", "peak_acts", "peak_mem_bytes");
      for (const auto& rs : r.ranks)
        std::printf("%5d %12.3f %12.3f %8.4f %10d %16llu\n", rs.rank, rs.busy_us, rs.idle_us, rs.bubble_fraction,
                    rs.peak_activations, static_cast<unsigned long long>(rs.peak_memory_bytes));
      if (r.oom)
        std::printf("%s\n", r.oom->message().c_str());
    }
    return r.oom ? 3 : 0;
  }};
}

} // namespace pippy::cli
