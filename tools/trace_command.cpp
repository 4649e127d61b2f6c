#include <chrono>
#include <iostream>
#include <thread>

#include "commands.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/traces/chrome_trace.hpp"
#include "pippy/traces/live.hpp"
#include "pippy/traces/metrics.hpp"
#include "pippy/traces/profile.hpp"

namespace pippy::cli {

command add_trace_command(CLI::App& app) {
  struct options {
    std::string file, predicted, measured, out, costs;
    int dp = 1;
    bool zero1 = false;
    std::vector<std::string> parts;
    std::size_t max_gaps = 20;
    schedule_options gen{.name = "1f1b", .num_ranks = 4, .num_microbatches = 8}; // as schedule and sim
    double us_per_unit = 1000;
    int port = -1;
    std::string jsonl;
    double delay_ms = 0;
    bool force = false;
  };
  auto o = std::make_shared<options>();
  auto* sub = app.add_subcommand("trace", "Summarise, compare, make and publish traces");
  sub->require_subcommand(1);
  auto* summary = sub->add_subcommand("summary", "Step time, bubbles, idle gaps and their causes, critical path");
  summary->add_option("FILE", o->file, "Chrome trace-event JSON file")->required();
  summary->add_option("--gaps", o->max_gaps, "How many of the largest idle gaps to list")->capture_default_str();
  auto* diff = sub->add_subcommand("diff", "Per-rank and per-action-kind error of a prediction");
  diff->add_option("PREDICTED", o->predicted, "Predicted (simulated) trace")->required();
  diff->add_option("MEASURED", o->measured, "Measured trace of the same schedule")->required();
  diff->add_flag("--force", o->force, "compare traces that are not of one schedule and size (matched by rank and action)");
  auto* make = sub->add_subcommand("make", "A trace of a generated schedule under unit costs (F=1, I=W=1, B=2)");
  make->add_option("--schedule", o->gen.name, "Schedule name")->capture_default_str();
  make->add_option("--ranks", o->gen.num_ranks, "Pipeline ranks R")->capture_default_str();
  make->add_option("--microbatches", o->gen.num_microbatches, "Micro-batches M")->capture_default_str();
  make->add_option("--stages-per-rank", o->gen.stages_per_rank, "Stages per rank V");
  make->add_option("--us-per-unit", o->us_per_unit, "Microseconds per cost unit")
      ->check(within(1e-6, 1e6))
      ->capture_default_str();
  make->add_option("-o,--output", o->out, "Chrome trace file to write")->required();
  auto* merge = sub->add_subcommand("merge", "One trace of the ranks that separate files hold (e.g. each process's torch.profiler trace)");
  merge->add_option("FILES", o->parts, "Traces of different ranks (a torch.profiler file's rank is its distributedInfo.rank)")
      ->required();
  merge->add_option("-o,--output", o->out, "Chrome trace file to write")->required();
  auto* profile = sub->add_subcommand("profile", "A run's cost file again from its trace and the cost file it wrote, under this "
                                                 "build's rules (to compare a rule on runs already made)");
  profile->add_option("TRACE", o->file, "The run's --trace file (every step)")->required();
  profile->add_option("--cost-file", o->costs, "The cost file the same run wrote (--profile): sizes, probed links, layers")
      ->required();
  profile->add_option("--dp", o->dp, "Replicas the run had (pp x dp), for a ZeRO-1 run's U")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  profile->add_flag("--zero1", o->zero1, "The run was ZeRO-1 (with --dp): its U is 1/DP of the step and the all-gather");
  profile->add_option("-o,--output", o->out, "Cost file to write")->required();
  auto* publish = sub->add_subcommand("publish", "Replay a trace as a live JSON-lines stream (a stand-in for a running job)");
  publish->add_option("FILE", o->file, "Chrome trace-event JSON file")->required();
  publish->add_option("--port", o->port, "TCP port to serve on (0 = any free one, -1 = none)")->check(CLI::Range(0, 65535))->capture_default_str();
  publish->add_option("--jsonl", o->jsonl, "Write the lines to this file as well (replacing it)");
  publish->add_option("--delay-ms", o->delay_ms, "Pause between events")->check(within(0, 60000))->capture_default_str();
  return {sub, [o, summary, diff, make, merge, profile, publish] {
    if (summary->parsed()) {
      const trace t = load_chrome_trace(o->file);
      std::cout << format_steps(t) << format_summary(t, compute_metrics(t), o->max_gaps);
    } else if (diff->parsed()) {
      const trace predicted = load_chrome_trace(o->predicted), measured = load_chrome_trace(o->measured);
      if (const std::string why = why_not_comparable(predicted, measured); !why.empty() && !o->force)
        throw input_error("trace diff: " + o->predicted + " and " + o->measured + " are not one schedule's prediction "
                          "and measurement: " + why + " (--force compares them anyway)");
      std::cout << format_diff(diff_traces(predicted, measured));
    } else if (make->parsed()) {
      o->gen.optimizer_steps = false;
      const schedule s = make_schedule(o->gen);
      const auto run = o->gen.name + " R=" + std::to_string(o->gen.num_ranks) + " M=" + std::to_string(o->gen.num_microbatches);
      save_chrome_trace(trace_from_evaluation(evaluate(s, unit_costs{}), run, o->us_per_unit), o->out);
    } else if (merge->parsed()) {
      std::vector<trace> parts;
      for (const auto& f : o->parts)
        parts.push_back(load_chrome_trace(f));
      const trace t = merge_ranks(parts, o->parts);
      save_chrome_trace(t, o->out);
      std::cout << "merged " << t.events.size() << " events of " << t.num_ranks << " ranks into " << o->out << "\n";
    } else if (profile->parsed()) {
      if (o->zero1 && o->dp < 2)
        throw input_error("--zero1 " + zero1_needs_replicas("--dp"));
      const trace t = load_chrome_trace(o->file);
      const cost_table again = profile_again(t, load_cost_file(o->costs), {.replicas = o->dp, .zero1 = o->zero1});
      save_cost_file(again, o->out, "measured");
      std::cout << "wrote " << o->out << ": " << again.stages.size() << " stages from " << std::max(1, steps_in(t) - 1)
                << " steps, per-action overhead " << again.action_overhead_us << " us\n";
    } else if (publish->parsed()) {
      trace t = load_chrome_trace(o->file);
      std::stable_sort(t.events.begin(), t.events.end(), [](auto& a, auto& b) { return a.end_us < b.end_us; });
      if (o->port < 0 && o->jsonl.empty())
        throw input_error("trace publish: give --port or --jsonl");
      live_publisher pub({.port = o->port, .path = o->jsonl, .truncate = true}); // as --live FILE: a rerun replaces
      if (pub.port() >= 0)
        std::cout << "serving on 127.0.0.1:" << pub.port() << std::endl;
      for (const auto& e : t.events) {
        pub.publish(e);
        if (o->delay_ms > 0)
          std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(o->delay_ms));
      }
      pub.flush();
      std::cout << "published " << pub.published() << " events\n";
    }
    return 0;
  }};
}

} // namespace pippy::cli
