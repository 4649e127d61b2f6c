#include <iostream>

#include "commands.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/schedule_io.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy::cli {

schedule schedule_for(const CLI::App& sub, const schedule_options& gen, const std::string& from) {
  if (from.empty())
    return make_schedule(gen);
  schedule s = load_schedule_file(from);
  auto agree = [&](const char* flag, int given, int in_file, const char* what) {
    if (sub.count(flag) > 0 && given != in_file)
      throw input_error(std::string(flag) + " is " + std::to_string(given) + " but " + from + " has " +
                        std::to_string(in_file) + " " + what);
  };
  agree("--ranks", gen.num_ranks, s.shape.num_ranks, "ranks");
  agree("--microbatches", gen.num_microbatches, s.shape.num_microbatches, "micro-batches");
  agree("--stages-per-rank", gen.stages_per_rank, s.shape.stages_per_rank, "stages per rank");
  return s;
}

command add_schedule_command(CLI::App& app) {
  struct options {
    schedule_options gen{.name = "1f1b", .num_ranks = 4, .num_microbatches = 8};
    std::string format = "grid";
    std::string from;
    bool lowered = false;
    bool no_optimizer_step = false;
    bool list = false;
  };
  auto o = std::make_shared<options>();
  auto* sub = app.add_subcommand("schedule", "Generate, validate and print a pipeline schedule");
  std::string names;
  for (auto n : schedule_names())
    names += (names.empty() ? "" : ", ") + std::string(n);
  sub->add_option("--schedule", o->gen.name, "Schedule name: " + names)->capture_default_str();
  sub->add_option("--ranks", o->gen.num_ranks, "Pipeline ranks R")->capture_default_str();
  sub->add_option("--microbatches", o->gen.num_microbatches, "Micro-batches M per step")->capture_default_str();
  sub->add_option("--stages-per-rank", o->gen.stages_per_rank,
                  "Stages per rank V (default 1, or 2 for zbv and dualpipev)");
  sub->add_option("--format", o->format, "grid (ASCII timeline under unit costs), csv or json")
      ->check(CLI::IsMember({"grid", "csv", "json"}))
      ->capture_default_str();
  sub->add_option("--from", o->from, "Validate and print a schedule from a CSV or JSON file instead");
  sub->add_flag("--lowered", o->lowered, "Include the SEND/RECV actions between ranks");
  sub->add_flag("--no-optimizer-step", o->no_optimizer_step, "Leave out the U action of each stage");
  sub->add_flag("--list", o->list, "Print the schedule names, one per line");
  return {sub, [o, sub] {
    if (o->list) {
      for (auto n : schedule_names())
        std::cout << n << "\n";
      return 0;
    }
    o->gen.optimizer_steps = !o->no_optimizer_step;
    schedule s = schedule_for(*sub, o->gen, o->from);
    validate(s);
    if (o->lowered)
      s = add_communication(s);
    validate(s);
    if (o->format == "csv")
      std::cout << to_csv(s);
    else if (o->format == "json")
      std::cout << to_json(s);
    else
      std::cout << render_grid(s, evaluate(s, unit_costs{}));
    return 0;
  }};
}

} // namespace pippy::cli
