#include <catch2/catch.hpp>

#include <fstream>

#include "cli_runner.hpp"

TEST_CASE("pippy schedule prints a grid, CSV and JSON") {
  auto grid = run_pippy("schedule --schedule gpipe --ranks 2 --microbatches 2 --no-optimizer-step");
  CHECK(grid.exit_code == 0);
  CHECK(grid.output ==
        "rank 0 | 0F0 0F1 .   .   .   0B0 0B0 0B1 0B1 | bubble 0.333\n"
        "rank 1 | .   1F0 1F1 1B0 1B0 1B1 1B1 .   .   | bubble 0.333\n"
        "gpipe: 2 ranks, 2 stages, 2 micro-batches, makespan 9, bubble 0.333\n");
  auto csv = run_pippy("schedule --schedule 1f1b --ranks 2 --microbatches 2 --format csv");
  CHECK(csv.exit_code == 0);
  CHECK(csv.output == "0F0,0F1,0B0,0B1,0U\n1F0,1B0,1F1,1B1,1U\n");
  auto lowered = run_pippy("schedule --schedule 1f1b --ranks 2 --microbatches 2 --format csv --lowered");
  CHECK(lowered.exit_code == 0);
  CHECK(lowered.output == "0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0RECV_B1,0B1,0U\n"
                          "1RECV_F0,1F0,1B0,1SEND_B0,1RECV_F1,1F1,1B1,1SEND_B1,1U\n");
  auto json = run_pippy("schedule --schedule zbv --ranks 2 --microbatches 4 --format json");
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.output, Catch::Contains("\"placement\": \"v\""));
  // The JSON file format, exactly: one-space indents, keys sorted, one action per line.
  auto small = run_pippy("schedule --schedule gpipe --ranks 2 --microbatches 1 --format json --no-optimizer-step");
  CHECK(small.exit_code == 0);
  CHECK(small.output == "{\n \"actions\": [\n  [\n   \"0F0\",\n   \"0B0\"\n  ],\n  [\n   \"1F0\",\n   \"1B0\"\n  ]\n ],\n"
                        " \"microbatches\": 1,\n \"name\": \"gpipe\",\n \"placement\": \"looped\",\n \"ranks\": 2,\n"
                        " \"stages_per_rank\": 1\n}\n");
}

TEST_CASE("pippy schedule --from validates and prints a user's schedule") {
  {
    std::ofstream out("cli_user.csv");
    out << "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n";
  }
  auto ok = run_pippy("schedule --from cli_user.csv --format csv");
  CHECK(ok.exit_code == 0);
  CHECK(ok.output == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  {
    std::ofstream out("cli_bad.csv");
    out << "0F0,0F1,0B0,0B1\n1F0,1W0,1F1,1B1\n";
  }
  auto mismatch = run_pippy("schedule --from cli_user.csv --microbatches 4");
  CHECK(mismatch.exit_code == 2);
  CHECK(mismatch.output == "error: --microbatches is 4 but cli_user.csv has 2 micro-batches\n");
  auto agreeing = run_pippy("schedule --from cli_user.csv --ranks 2 --microbatches 2 --format csv");
  CHECK(agreeing.exit_code == 0);
  auto sim_mismatch = run_pippy("sim --from cli_user.csv --ranks 3");
  CHECK(sim_mismatch.exit_code == 2);
  CHECK(sim_mismatch.output == "error: --ranks is 3 but cli_user.csv has 2 ranks\n");
  auto bad = run_pippy("schedule --from cli_bad.csv");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output == "error: invalid schedule 'cli_bad.csv': stage 1 micro-batch 0 has W without I\n");
  {
    std::ofstream out("cli_cell.csv");
    out << "0F0,0F1,0B0,0B1\n1F0,1B0,1Fx,1B1\n";
  }
  auto cell = run_pippy("schedule --from cli_cell.csv");
  CHECK(cell.exit_code == 2);
  CHECK(cell.output == "error: cli_cell.csv:2, column 3: action '1Fx': expected a micro-batch number after F\n");
}

TEST_CASE("pippy schedule rejects bad sizes and names naming the field") {
  auto name = run_pippy("schedule --schedule nope --ranks 2 --microbatches 2");
  CHECK(name.exit_code == 2);
  CHECK_THAT(name.output, Catch::StartsWith("error: schedule: unknown name 'nope'"));
  auto sizes = run_pippy("schedule --schedule 1f1b --ranks 4 --microbatches 2");
  CHECK(sizes.exit_code == 2);
  CHECK(sizes.output == "error: microbatches: 1f1b needs at least as many micro-batches as stages (4), got 2\n");
  auto format = run_pippy("schedule --format xml");
  CHECK(format.exit_code != 0);
  CHECK_THAT(format.output, Catch::Contains("--format"));
  auto list = run_pippy("schedule --list");
  CHECK(list.exit_code == 0);
  CHECK(list.output == "gpipe\n1f1b\ninterleaved-1f1b\nlooped-bfs\ninterleaved-zb\nzbv\ndualpipev\nzb-h1\nzb-h2\n");
  auto help = run_pippy("schedule --help");
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Catch::Contains("--stages-per-rank"));
}
