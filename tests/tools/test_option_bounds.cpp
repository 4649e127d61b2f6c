// Issue 14: every number option is checked against a stated range (NaN and infinities refused), and a
// directory given as a file is an error naming it. One case per defect found.
#include <catch2/catch.hpp>

#include <filesystem>

#include "cli_runner.hpp"

namespace {

void refused(const std::string& args, const std::string& message) {
  INFO("pippy " << args);
  const auto r = run_pippy(args);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128); // an error, never a signal (abort, SEGV)
  CHECK_THAT(r.output, Catch::Contains(message));
}

} // namespace

TEST_CASE("pippy's number options refuse NaN, infinities, negatives and out-of-range values") {
  // Were ignored (inter-host), printed makespan null and exited 0 (inf), or wrapped the peak memory.
  refused("sim --inter-host-latency-us -1", "--inter-host-latency-us: must be a finite number from 0 to 1e+12 (got -1)");
  refused("sim --inter-host-bandwidth-gbps nan", "--inter-host-bandwidth-gb-per-s: must be a finite number from 0 to 1e+12 (got nan)");
  refused("sim --latency-us inf", "--latency-us: must be a finite number from 0 to 1e+12 (got inf)");
  refused("sim --activation-bytes 9223372036854775807",
          "--activation-bytes: Value 9223372036854775807 not in range 0 to 1099511627776");
  refused("sim --cost F=1e308", "--cost: F must be at most 1e+12 microseconds (got 1e+308)");
  refused("sim --jitter 2", "--jitter: must be a finite number from 0 to 1 (got 2)");
  refused("plan --cost-file x.json --ranks 2 --latency-us nan", "--latency-us: must be a finite number from 0 to 1e+12 (got nan)");
  // Wrote traces that `trace summary` then refused.
  refused("trace make --us-per-unit -1 -o never.json", "--us-per-unit: must be a finite number from 1e-06 to 1e+06 (got -1)");
  CHECK_FALSE(std::filesystem::exists("never.json"));
  // Served on 99999 mod 65536.
  refused("trace publish --port 99999 t.json", "--port: Value 99999 not in range 0 to 65535");
  refused("run --grace nan -- true", "--grace: must be a finite number from 0 to 3600 (got nan)");
  refused("run --nproc 0 -- true", "--nproc: Value 0 not in range 1 to 4096");
  refused("schedule --microbatches 10000000", "microbatches must be at most 1048576 (got 10000000)");
  refused("schedule --schedule interleaved-1f1b --ranks 65536 --stages-per-rank 65536",
          "ranks x stages-per-rank must be at most 1048576 stages (got 65536 x 65536 = 4294967296)");
}

TEST_CASE("a directory given as a file is an error naming it") {
  const std::string dir = std::filesystem::temp_directory_path().string();
  refused("schedule --from " + dir, dir + ": cannot open schedule file");
  refused("sim --cost-file " + dir, "cost file '" + dir + "': cannot open it");
  refused("trace summary " + dir, dir + ": cannot open trace file");
}
