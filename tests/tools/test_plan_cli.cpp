// pippy plan --emit: the best plan's compute-only schedule (core's CSV), plan.json and its per-stage costs, written whole.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_runner.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/schedule_io.hpp"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

TEST_CASE("pippy plan --emit writes the best plan's schedule, plan.json and costs, which pippy sim replays") {
  {
    std::ofstream out("plan_six_layers.json");
    out << R"({"stages":[{"F":1}],"layers":[)"
        << R"({"name":"embed","F":4,"I":1,"W":1},{"name":"h.0","F":1,"I":1,"W":1},{"name":"h.1","F":1,"I":1,"W":1},)"
        << R"({"name":"h.2","F":1,"I":1,"W":1},{"name":"h.3","F":1,"I":1,"W":1},{"name":"head","F":2,"I":1,"W":1}]})";
  }
  std::filesystem::remove_all("plan_out");
  const auto r = run_pippy("plan --cost-file plan_six_layers.json --ranks 2 --schedules 1f1b --microbatches 4 --emit plan_out/best");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("wrote plan_out/best/schedule.csv, plan_out/best/plan.json and plan_out/best/costs.json"));
  // F + B per layer: embed 6, h.* 3 each, head 4: halves of 24 are embed + h.0 + h.1 (12) and the rest (12).
  const auto plan = nlohmann::json::parse(read_all("plan_out/best/plan.json"));
  CHECK(plan["schedule"] == "1f1b");
  CHECK(plan["ranks"] == 2);
  CHECK(plan["stages_per_rank"] == 1);
  CHECK(plan["microbatches"] == 4);
  CHECK(plan["boundaries"] == nlohmann::json::array({0, 3}));
  CHECK(plan["split_points"] == nlohmann::json::array({"h.2"}));
  // Stages F=6, B=6 and F=4, B=6; 1F1B by hand: rank 0 runs F0 0-6, F1 6-12, B0 16-22, F2 22-28, B1 28-34,
  // F3 34-40, B2 40-46, B3 50-56 (rank 1's B3 ends at 50).
  CHECK(plan["predicted_step_us"] == 56.0);
  CHECK(plan["fits"] == true);
  const std::string csv = read_all("plan_out/best/schedule.csv");
  CHECK(csv == pippy::to_csv(pippy::make_schedule({.name = "1f1b", .num_ranks = 2, .num_microbatches = 4})));
  CHECK_FALSE(std::filesystem::exists("plan_out/best/plan.json.tmp"));
  // The costs it was scored with: the simulator replays the plan to the same step.
  const auto costs = nlohmann::json::parse(read_all("plan_out/best/costs.json"));
  REQUIRE(costs["stages"].size() == 2);
  CHECK(costs["stages"][0]["F"] == 6.0);
  CHECK(costs["stages"][1]["F"] == 4.0);
  const auto sim = run_pippy("sim --from plan_out/best/schedule.csv --cost-file plan_out/best/costs.json --json");
  REQUIRE(sim.exit_code == 0);
  CHECK(nlohmann::json::parse(sim.output)["step_us"] == 56.0);
  // A directory that cannot be made is named.
  { std::ofstream("plan_out/file") << "x"; }
  const auto bad = run_pippy("plan --cost-file plan_six_layers.json --ranks 2 --emit plan_out/file/sub");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("error: --emit: cannot create directory 'plan_out/file/sub'"));
}

TEST_CASE("pippy plan --other-size: a second run's layers at its own size, and a profile of the same size refused") {
  {
    std::ofstream a("plan_sizes_16.json");
    a << R"({"stages":[{"F":1}],"microbatch_rows":16,"layers":[{"name":"p","F":1,"I":1,"W":1},{"name":"q","F":1,"I":1,"W":1}]})";
    std::ofstream b("plan_sizes_64.json");
    b << R"({"stages":[{"F":1}],"microbatch_rows":64,"layers":[{"name":"p","F":10,"I":2,"W":2},{"name":"q","F":10,"I":2,"W":2}]})";
  }
  auto gpipe_one_microbatch = [](const std::string& output) {
    const auto parsed = nlohmann::json::parse(output);
    for (const auto& p : parsed["plans"])
      if (p["microbatches"] == 1 && p["stages_per_rank"] == 1)
        return p["predicted_step_us"].get<double>();
    return -1.0;
  };
  const std::string plan = "plan --cost-file plan_sizes_16.json --ranks 2 --schedules gpipe --global-batch 64 --top 10 --json";
  // 64 rows in one micro-batch: from the 16-row profile alone, 4x its times (F 4, B 8 per stage: 24 us);
  // with the 64-row run, that run's own (F 10, B 4: 28 us).
  const auto alone = run_pippy(plan);
  REQUIRE(alone.exit_code == 0);
  CHECK(gpipe_one_microbatch(alone.output) == Approx(24));
  const auto both = run_pippy(plan + " --other-size plan_sizes_64.json");
  REQUIRE(both.exit_code == 0);
  CHECK(gpipe_one_microbatch(both.output) == Approx(28));
  // Two runs of each size: each profile alone is blended with the other size's of the same index, or with
  // their median where there are not as many (here all alike: 28 each).
  auto by_profile = [](const std::string& output) {
    const auto parsed = nlohmann::json::parse(output);
    for (const auto& p : parsed["plans"])
      if (p["microbatches"] == 1 && p["stages_per_rank"] == 1)
        return p["expected_step_us_by_profile"];
    return nlohmann::json();
  };
  const std::string twice = "plan --cost-file plan_sizes_16.json plan_sizes_16.json --ranks 2 --schedules gpipe "
                            "--global-batch 64 --top 10 --json --other-size plan_sizes_64.json";
  const auto paired = run_pippy(twice + " plan_sizes_64.json");
  REQUIRE(paired.exit_code == 0);
  CHECK(by_profile(paired.output) == nlohmann::json::array({28.0, 28.0}));
  const auto unpaired = run_pippy(twice);
  REQUIRE(unpaired.exit_code == 0);
  CHECK(by_profile(unpaired.output) == nlohmann::json::array({28.0, 28.0}));
  const auto same = run_pippy("plan --cost-file plan_sizes_16.json --other-size plan_sizes_16.json --ranks 2");
  CHECK(same.exit_code != 0);
  CHECK_THAT(same.output, Catch::Contains("cost file 'plan_sizes_16.json': its microbatch_rows (16) are cost file "
                                          "'plan_sizes_16.json''s: a second profile must come from a run of another "
                                          "micro-batch size"));
}

TEST_CASE("pippy plan and sim take several profiles of one run: each time the median of theirs") {
  {
    // Three runs of one configuration; the second was slow, the third's stage 1 quick.
    std::ofstream("plan_run_1.json") << R"({"stages":[{"F":2,"B":4},{"F":2,"B":4}],"action_overhead_us":1})";
    std::ofstream("plan_run_2.json") << R"({"stages":[{"F":6,"B":12},{"F":6,"B":12}],"action_overhead_us":5})";
    std::ofstream("plan_run_3.json") << R"({"stages":[{"F":3,"B":6},{"F":1,"B":2}],"action_overhead_us":2})";
    std::ofstream("plan_run_other.json") << R"({"stages":[{"F":2,"B":4}]})";
  }
  // The median: stages F 3, B 6 and F 2, B 4, overhead 2; GPipe with one micro-batch: (2 + 3) + (2 + 2) +
  // (2 + 4) + (2 + 6) = 23.
  const auto sim = run_pippy("sim --schedule gpipe --ranks 2 --microbatches 1 --cost-file plan_run_1.json "
                             "plan_run_2.json --cost-file plan_run_3.json --json");
  REQUIRE(sim.exit_code == 0);
  CHECK(nlohmann::json::parse(sim.output)["step_us"] == 23.0);
  const auto plan = run_pippy("plan --cost-file plan_run_1.json plan_run_2.json plan_run_3.json --ranks 2 "
                              "--schedules gpipe --microbatches 1");
  REQUIRE(plan.exit_code == 0);
  CHECK_THAT(plan.output, Catch::Contains("from cost files 'plan_run_1.json', 'plan_run_2.json', 'plan_run_3.json' "
                                          "(their median)"));
  CHECK_THAT(plan.output, Catch::Contains("23.000"));
  // Beside it, each plan's step over plan 1's from each profile alone (plan 1 against itself: 0).
  CHECK_THAT(plan.output, Catch::Contains("vs_1_by_profile"));
  CHECK_THAT(plan.output, Catch::Contains("+0.0..+0.0%"));
  // Steps back to back (expected_step_us) take one step and the next step's first overhead: the median's
  // 23 + 2, and each profile alone (1 + 2) + (1 + 2) + (1 + 4) + (1 + 4) + 1 = 17, (5 + 6) * 2 +
  // (5 + 12) * 2 + 5 = 61 and (2 + 3) + (2 + 1) + (2 + 2) + (2 + 6) + 2 = 22.
  const auto json = run_pippy("plan --cost-file plan_run_1.json plan_run_2.json plan_run_3.json --ranks 2 "
                              "--schedules gpipe --microbatches 1 --json");
  REQUIRE(json.exit_code == 0);
  const auto best = nlohmann::json::parse(json.output)["plans"][0];
  CHECK(best["simulated_step_us"] == 23.0);
  CHECK(best["expected_step_us"] == 25.0);
  CHECK(best["expected_step_us_by_profile"] == nlohmann::json::array({17.0, 61.0, 22.0}));
  // One profile: no such column.
  const auto one = run_pippy("plan --cost-file plan_run_1.json --ranks 2 --schedules gpipe --microbatches 1");
  REQUIRE(one.exit_code == 0);
  CHECK_THAT(one.output, !Catch::Contains("vs_1_by_profile"));
  const auto mixed = run_pippy("sim --schedule gpipe --ranks 1 --microbatches 1 --cost-file plan_run_1.json plan_run_other.json");
  CHECK(mixed.exit_code == 2);
  CHECK_THAT(mixed.output, Catch::Contains("error: cost file 'plan_run_other.json': the number of stages (1) differs "
                                           "from cost file 'plan_run_1.json''s"));
}
