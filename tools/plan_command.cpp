// pippy plan: the planner's ranked table of schedule x V x M x split for a profile, the top ones
// re-simulated with the actors to show that the prediction is the simulator's step time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/planner.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/core/text_file.hpp"
#include "pippy/simulator/simulator.hpp"

namespace pippy::cli {
namespace {

std::string joined(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& s : items)
    out += (out.empty() ? "" : sep) + s;
  return out;
}

// Writes the best plan: its compute-only schedule as CSV, plan.json, and the per-stage costs it was scored
// with (costs.json, so that `pippy sim --from DIR/schedule.csv --cost-file DIR/costs.json` gives its
// prediction and timeline), each whole or not at all.
void emit(const std::string& dir, const cost_table& profile, const plan_options& po, const plan_candidate& best) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw input_error("--emit: cannot create directory '" + dir + "': " + ec.message());
  const std::string csv = to_csv(plan_schedule(po, best)), json = to_plan_json(best, best.ranks);
  write_file_atomically(dir + "/schedule.csv", [&](std::ostream& out) { out << csv; });
  write_file_atomically(dir + "/plan.json", [&](std::ostream& out) { out << json; });
  cost_table costs = plan_costs(profile, po, best);
  costs.noise = profile.noise; // scored at the means; the expected step (`pippy sim`) draws from this
  save_cost_file(costs, dir + "/costs.json", "planned");
}

} // namespace

command add_plan_command(CLI::App& app) {
  struct options {
    std::vector<std::string> cost_files, other_sizes;
    std::string emit_dir;
    int ranks = 0, processes = 0, top = 5, cpus = 0;
    long long memory_cap = 0, global_batch = 0;
    std::vector<int> microbatches;
    std::vector<std::string> schedules;
    bool json = false, zero1 = false;
    link_options links;
  };
  auto o = std::make_shared<options>();
  auto* sub = app.add_subcommand("plan", "Rank schedule x stages per rank x micro-batches x split for a profile");
  sub->add_option("--cost-file", o->cost_files,
                  "Profile (a cost file; with per-layer costs, \"layers\", the layers are split into stages); "
                  "several profiles of one configuration (its run repeated): each time the median of theirs "
                  "(core's median_profile)")
      ->type_name("PROFILE...");
  sub->add_option("--other-size", o->other_sizes,
                  "A profile of the same model from a run of another micro-batch size (several: their median): "
                  "each layer's time is taken from --cost-file's run at its size, from this one's at this one's, "
                  "blended in rows in between (core's blend_profiles)")
      ->type_name("PROFILE...");
  auto* ranks = sub->add_option("--ranks", o->ranks, "Pipeline ranks R");
  auto* processes = sub->add_option("--processes", o->processes,
                                    "Plan pp x dp instead: every R x D = this many processes, D replicas of an R-rank "
                                    "pipeline sharing the global batch (needs --global-batch)")
                        ->check(CLI::Range(1, 1 << 16));
  ranks->excludes(processes);
  sub->add_flag("--zero1", o->zero1,
                "With --processes: plans with D > 1 replicas are ZeRO-1 (reduce-scatter before U, all-gather after "
                "it, 1/D of the optimizer state per replica)");
  sub->add_option("--cpus", o->cpus,
                  "The CPUs the ranks will be bound to (`pippy run --bind-cores` on a host of that many): where the "
                  "ranks (R x D with --processes) outnumber them, ranks share a CPU, round robin, as that binds "
                  "them (0: a CPU for each)")
      ->check(CLI::Range(0, 1 << 16));
  sub->add_option("--memory-cap", o->memory_cap, "Memory per rank in bytes (0 = none): plans that exceed it rank last")
      ->type_name("BYTES");
  auto* batch = sub->add_option("--global-batch", o->global_batch,
                                "Rows per step: M from its divisors, costs scaled to G/M rows per micro-batch "
                                "(by the profile's microbatch_rows)");
  auto* mbs = sub->add_option("--microbatches", o->microbatches, "Micro-batch counts to try (default R, 2R, 4R, 8R)");
  sub->add_option("--schedules", o->schedules, "Schedules to try, comma-separated (default: all)")->delimiter(',');
  sub->add_option("--top", o->top, "Plans to show and re-simulate")->capture_default_str();
  sub->add_flag("--json", o->json, "Print the table as JSON");
  sub->add_option("--emit", o->emit_dir, "Write the best plan to DIR/schedule.csv, DIR/plan.json and DIR/costs.json (its per-stage costs)")->type_name("DIR");
  add_link_options(*sub, o->links);
  return {sub, [o, batch, mbs] {
    if (o->cost_files.empty())
      throw input_error("--cost-file is required: a profile (`pippy run ... --profile FILE` writes one)");
    if (o->ranks < 1 && o->processes < 1)
      throw input_error("--ranks (or --processes) is required: the number of pipeline ranks, at least 1 (got " +
                        std::to_string(o->ranks) + ")");
    if (o->zero1 && o->processes < 2)
      throw input_error("--zero1 " + zero1_needs_replicas("--processes"));
    if (o->top < 1)
      throw input_error("--top must be at least 1 (got " + std::to_string(o->top) + ")");
    if (o->memory_cap < 0)
      throw input_error("--memory-cap must be non-negative (got " + std::to_string(o->memory_cap) + ")");
    if (batch->count() > 0 && mbs->count() > 0)
      throw input_error("--global-batch and --microbatches exclude each other (M is taken from G's divisors or from the list)");
    if (batch->count() > 0 && o->global_batch < 1)
      throw input_error("--global-batch must be at least 1 row (got " + std::to_string(o->global_batch) + ")");
    const loaded_profiles profiles = load_profiles(o->cost_files);
    const std::optional<loaded_profiles> others =
        o->other_sizes.empty() ? std::nullopt : std::optional(load_profiles(o->other_sizes));
    const std::string source = profiles_named(o->cost_files);
    const cost_table profile =
        others ? blend_profiles(profiles.median, others->median, source, profiles_named(o->other_sizes)) : profiles.median;
    plan_options po{.num_ranks = o->ranks, .schedules = o->schedules, .microbatches = o->microbatches,
                    .global_batch = o->global_batch, .links = make_link_model(o->links), .processes = o->processes};
    po.memory.cap_bytes = static_cast<std::uint64_t>(o->memory_cap);
    po.data_parallel.zero1 = o->zero1;
    po.cpus = o->cpus;
    po.rerank_pool = std::max(po.rerank_pool, o->top);
    const auto t0 = std::chrono::steady_clock::now();
    const plan_result plan = make_plan(profile, po);
    const double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The top plans again, with the actors: at the profile's mean times the flat evaluator's step alone must
    // be the simulator's. (The planner ranked them by the step the runtime measures, steps back to back and
    // with the profile's noise, as `pippy sim` gives it in expected_step_us.)
    const std::size_t K = std::min(plan.candidates.size(), static_cast<std::size_t>(o->top));
    std::vector<double> simulated;
    for (std::size_t k = 0; k < K; ++k) {
      const plan_candidate& c = plan.candidates[k];
      sim::sim_options so{.costs = plan_costs(profile, po, c), .links = po.links,
                          .data_parallel = {.replicas = c.replicas, .sync = po.data_parallel.sync, .zero1 = c.zero1},
                          .track_microbatches = false};
      so.memory.state_factor = po.memory.state_factor; // no cap: the full step, as predicted
      const schedule sched = plan_schedule(po, c);
      simulated.push_back(sim::simulate(sched, so).step_us);
    }
    // With several profiles of a run, each top plan's step from each profile on its own (blended with the
    // other size's profile of the same index, or with their median when there are not as many). A machine's
    // drift moves every plan of a profile alike, so what tells whether two plans' order holds is each one's
    // step over the first plan's from the same profile: a range that holds 0 is a tie within the runs.
    std::vector<std::vector<double>> by_profile(K);
    if (profiles.runs.size() > 1) {
      const bool paired = others && others->runs.size() == profiles.runs.size();
      flat_evaluator ev;
      for (std::size_t i = 0; i < profiles.runs.size(); ++i) {
        const cost_table& own = profiles.runs[i];
        const std::string name = profiles_named({o->cost_files[i]});
        const cost_table single =
            !others ? own
            : paired ? blend_profiles(own, others->runs[i], name, profiles_named({o->other_sizes[i]}))
                     : blend_profiles(own, others->median, name, profiles_named(o->other_sizes));
        for (std::size_t k = 0; k < K; ++k)
          by_profile[k].push_back(plan_expected_step_us(ev, single, po, plan.candidates[k]));
      }
    }
    const char* unit = plan.rows_known ? "rows/s" : "micro-batches/s";
    if (o->json) {
      nlohmann::json plans = nlohmann::json::array();
      for (std::size_t k = 0; k < K; ++k) {
        auto j = nlohmann::json::parse(to_plan_json(plan.candidates[k], plan.candidates[k].ranks));
        j["rank"] = k + 1;
        j["simulated_step_us"] = simulated[k]; // one step alone at the mean costs, by the actors
        j["expected_step_us"] = plan.candidates[k].expected_step_us;
        j["throughput"] = plan.candidates[k].throughput;
        j["throughput_unit"] = unit;
        if (!by_profile[k].empty())
          j["expected_step_us_by_profile"] = by_profile[k];
        plans.push_back(j);
      }
      const nlohmann::json out{{"ranks", po.num_ranks},          {"processes", po.processes},
                               {"layers", plan.layers},
                               {"per_layer", plan.per_layer},    {"global_batch", po.global_batch},
                               {"memory_cap_bytes", o->memory_cap}, {"candidates", plan.candidates.size()},
                               {"skipped", plan.skipped},        {"repeats", plan.repeats},
                               {"actions", plan.actions},
                               {"plan_wall_s", plan_s},          {"plans", plans}};
      std::cout << out.dump(2) << "\n";
    } else {
      if (po.processes > 0)
        std::printf("plan: %d processes as R x D, %d %s from %s", po.processes, plan.layers,
                    plan.per_layer ? "layers" : "stages", source.c_str());
      else
        std::printf("plan: %d ranks, %d %s from %s", po.num_ranks, plan.layers, plan.per_layer ? "layers" : "stages",
                    source.c_str());
      if (po.global_batch > 0)
        std::printf(", global batch %lld rows", static_cast<long long>(po.global_batch));
      if (o->memory_cap > 0)
        std::printf(", memory cap %lld bytes", o->memory_cap);
      if (o->zero1)
        std::printf(", ZeRO-1 wherever D > 1");
      std::printf("\n%zu candidates scored in %.3f s (%zu actions); %zu schedule/V/M combinations refused, %zu the "
                  "same as another schedule\n",
                  plan.candidates.size(), plan_s, plan.actions, plan.skipped, plan.repeats);
      if (po.global_batch > 0 && profile.microbatch_rows == 0)
        std::printf("note: the profile has no microbatch_rows, so its costs are used as they are for every M\n");
      // step_us: the prediction (steps back to back, with the noise); one_step_us: one step alone at the mean
      // times, by the actors.
      // vs_1_by_profile: the lowest and highest of the plan's step over plan 1's, each from one profile.
      const bool spread = profiles.runs.size() > 1;
      std::printf("%4s  %-16s %5s %3s %5s %14s %14s %15s %8s %16s %5s%s\n", "#", "schedule", "RxD", "V", "M", "step_us",
                  "one_step_us", unit, "bubble", "peak_mem_bytes", "fits", spread ? "   vs_1_by_profile" : "");
      for (std::size_t k = 0; k < K; ++k) {
        const plan_candidate& c = plan.candidates[k];
        const std::string shape = std::to_string(c.ranks) + "x" + std::to_string(c.replicas);
        std::printf("%4zu  %-16s %5s %3d %5d %14.3f %14.3f %15.1f %8.4f %16llu %5s", k + 1, c.schedule.c_str(),
                    shape.c_str(), c.stages_per_rank, c.microbatches, c.expected_step_us, simulated[k], c.throughput, c.bubble_fraction,
                    static_cast<unsigned long long>(c.peak_memory_bytes), c.fits ? "yes" : "no");
        if (spread) {
          double lo = std::numeric_limits<double>::infinity(), hi = -lo;
          for (std::size_t i = 0; i < by_profile[k].size(); ++i) {
            const double over = 100 * (by_profile[k][i] / by_profile[0][i] - 1);
            lo = std::min(lo, over), hi = std::max(hi, over);
          }
          std::printf("   %+.1f..%+.1f%%", lo, hi);
        }
        std::printf("\n");
      }
      const plan_candidate& best = plan.candidates.front();
      if (!best.split_points.empty())
        std::printf("best: split points (where stages 1..%zu begin): %s\n", best.split_points.size(),
                    joined(best.split_points, ", ").c_str());
    }
    if (!o->emit_dir.empty()) {
      emit(o->emit_dir, profile, po, plan.candidates.front());
      std::fprintf(stderr, "wrote %s/schedule.csv, %s/plan.json and %s/costs.json\n", o->emit_dir.c_str(), o->emit_dir.c_str(),
                   o->emit_dir.c_str());
    }
    for (std::size_t k = 0; k < K; ++k)
      if (simulated[k] != plan.candidates[k].step_us) {
        std::fprintf(stderr, "error: plan %zu: the actor simulator's step time %.17g us differs from the predicted %.17g us\n",
                     k + 1, simulated[k], plan.candidates[k].step_us);
        return 1;
      }
    if (!plan.candidates.front().fits) {
      std::fprintf(stderr, "no plan fits the memory cap of %lld bytes\n", o->memory_cap);
      return 3;
    }
    return 0;
  }};
}

} // namespace pippy::cli
