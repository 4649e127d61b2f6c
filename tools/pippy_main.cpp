#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "pippy/core/error.hpp"

int main(int argc, char** argv) {
  // Everything after `split` belongs to pippy-split, unparsed here (its options are not ours to know).
  if (argc > 1 && std::string(argv[1]) == "split")
    return pippy::cli::run_split(argc - 2, argv + 2);
  CLI::App app{"pippy: pipeline-parallel schedules simulated, executed and drawn by the same code"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default(); // every option's help shows its default (subcommands inherit it)
  const std::vector<pippy::cli::command> commands = {
      pippy::cli::add_schedule_command(app),
      pippy::cli::add_trace_command(app),
      pippy::cli::add_sim_command(app),
      pippy::cli::add_plan_command(app),
      pippy::cli::add_run_command(app),
      pippy::cli::add_split_command(app),
  };
  // `pippy help [COMMAND]`, as git and cargo take it: the same as --help.
  if (argc > 1 && std::string(argv[1]) == "help") {
    std::vector<std::string> args;
    for (int i = argc - 1; i >= 2; --i) // CLI11 takes them reversed
      args.emplace_back(argv[i]);
    args.insert(args.begin(), "--help");
    try {
      app.parse(args);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
  }
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& c : commands)
      if (c.app->parsed())
        return c.run();
  } catch (const pippy::input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
