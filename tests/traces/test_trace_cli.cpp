#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "../tools/cli_runner.hpp"

namespace {
std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("pippy-cli-" + std::to_string(::getpid()) + "-" + name)).string();
}
} // namespace

TEST_CASE("pippy trace make + summary prints the GPipe numbers", "[traces][cli]") {
  const auto f = tmp("g.json");
  REQUIRE(run_pippy("trace make --schedule gpipe --ranks 4 --microbatches 4 -o " + f).exit_code == 0);
  const auto r = run_pippy("trace summary " + f);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("step time: 21000.000 us"));
  CHECK_THAT(r.output, Catch::Contains("bubble fraction: 0.4286"));
  CHECK_THAT(r.output, Catch::Contains("   3        8    12000.000  0.4286"));
  CHECK_THAT(r.output, Catch::Contains("rank 0 idle 4000.000..13000.000 us (9000.000): waiting for the gradient of stage 1 micro-batch 0"));
  CHECK_THAT(r.output, Catch::Contains("critical path: 14 actions, 21000.000 us compute"));
  std::filesystem::remove(f);
}

TEST_CASE("pippy trace summary lists the simulator's OOM marker", "[traces][cli]") {
  const auto f = tmp("oom.json");
  REQUIRE(run_pippy("sim --schedule 1f1b --ranks 4 --microbatches 8 --activation-bytes 100 --memory-cap 350 --trace " + f)
              .exit_code == 3); // 3: out of memory
  const auto r = run_pippy("trace summary " + f);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("marker: OOM on rank 0 at ") && Catch::Contains("out of memory on rank 0 at 0F3"));
  std::filesystem::remove(f);
  // The live stream carries it too.
  const auto l = tmp("oom.jsonl");
  REQUIRE(run_pippy("sim --schedule 1f1b --ranks 4 --microbatches 8 --activation-bytes 100 --memory-cap 350 --live " + l)
              .exit_code == 3);
  std::ifstream in(l);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Catch::Contains("\"cat\":\"marker\"") && Catch::Contains("out of memory on rank 0 at 0F3"));
  std::filesystem::remove(l);
}

TEST_CASE("pippy trace diff prints per-rank and per-kind error", "[traces][cli]") {
  const auto a = tmp("a.json"), b = tmp("b.json");
  REQUIRE(run_pippy("trace make --schedule 1f1b --ranks 2 --microbatches 4 -o " + a).exit_code == 0);
  REQUIRE(run_pippy("trace make --schedule 1f1b --ranks 2 --microbatches 4 --us-per-unit 1250 -o " + b).exit_code == 0);
  const auto r = run_pippy("trace diff " + a + " " + b);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("step time: predicted 15000.000 us, measured 18750.000 us, error -20.00%"));
  CHECK_THAT(r.output, Catch::Contains("rank 1               8     12000.000     15000.000   -20.00%    20.00%"));
  CHECK_THAT(r.output, Catch::Contains("F                    8      8000.000     10000.000   -20.00%    20.00%"));
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST_CASE("pippy trace diff refuses traces of another schedule or size unless --force", "[traces][cli]") {
  const auto a = tmp("d1.json"), b = tmp("d2.json"), c = tmp("d3.json");
  REQUIRE(run_pippy("trace make --schedule 1f1b --ranks 2 --microbatches 4 -o " + a).exit_code == 0);
  REQUIRE(run_pippy("trace make --schedule interleaved-1f1b --ranks 4 --microbatches 8 -o " + b).exit_code == 0);
  REQUIRE(run_pippy("trace make --schedule gpipe --ranks 2 --microbatches 2 -o " + c).exit_code == 0);
  auto r = run_pippy("trace diff " + a + " " + b);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("are not one schedule's prediction and measurement: the traces have 2 and 4 ranks "
                                       "(--force compares them anyway)"));
  r = run_pippy("trace diff " + a + " " + c);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("their compute actions differ (16 and 8): another schedule, or another number "
                                       "of micro-batches or stages"));
  r = run_pippy("trace diff --force " + a + " " + c);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("step time: predicted"));
  for (const auto& f : {a, b, c})
    std::filesystem::remove(f);
}

TEST_CASE("pippy trace summary of bad files fails with the reason", "[traces][cli]") {
  const auto f = tmp("bad.json");
  std::ofstream(f) << "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"0F0\",\"pid\":-1,\"ts\":0,\"dur\":1}]}";
  auto r = run_pippy("trace summary " + f);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("traceEvents[0]: field \"pid\" (the rank) is out of range (from 0 to 1048575): -1"));
  std::ofstream(f, std::ios::trunc) << "";
  r = run_pippy("trace summary " + f);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("not valid JSON"));
  r = run_pippy("trace summary /nonexistent.json");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("cannot open trace file"));
  std::filesystem::remove(f);
}
