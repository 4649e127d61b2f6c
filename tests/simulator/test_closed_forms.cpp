// Uniform costs, zero-latency links: the simulated makespan equals the closed forms, and core's
// evaluate() (an independent dependency-only reference) agrees.
#include <catch2/catch.hpp>
#include <tuple>

#include "sim_helpers.hpp"

using namespace pippy;
using pippy::test::make;
using pippy::test::uniform_options;

namespace {
double sim_and_check(const schedule& s, double F, double I, double W) {
  auto opts = uniform_options(s, F, I, W);
  const auto r = sim::simulate(s, opts);
  REQUIRE(r.completed);
  const auto ref = evaluate(s, opts.costs);
  CHECK(r.makespan_us == ref.makespan);
  return r.makespan_us;
}
} // namespace

TEST_CASE("GPipe and 1F1B: makespan = (m+p-1)(F+B)", "[simulator][closed-form]") {
  const double F = 3, I = 2, W = 2; // B = 4
  for (const char* name : {"gpipe", "1f1b"})
    for (int p : {1, 2, 4, 8})
      for (int m : {1, 4, 8, 13, 32}) {
        if (std::string(name) == "1f1b" && m < p)
          continue;
        INFO(name << " p=" << p << " m=" << m);
        CHECK(sim_and_check(make(name, p, m), F, I, W) == (m + p - 1) * (F + I + W));
      }
}

TEST_CASE("interleaved 1F1B: makespan = (m*v+p-1)(F+B) when m % p == 0", "[simulator][closed-form]") {
  const double F = 1, I = 1, W = 1;
  for (int p : {2, 4})
    for (int v : {2, 3, 4})
      for (int m : {p, 2 * p, 4 * p}) {
        INFO("p=" << p << " v=" << v << " m=" << m);
        CHECK(sim_and_check(make("interleaved-1f1b", p, m, v), F, I, W) == (m * v + p - 1) * (F + I + W));
      }
}

// The form assumes W <= F (the zero-bubble paper's setting); with W > F the W's no longer fit the
// cool-down bubbles (p=4, m=8, F=I=1, W=2 gives 35, the form 32).
TEST_CASE("ZB-H1: makespan = m(F+I+W)+(p-1)(F+I-W) when W <= F", "[simulator][closed-form]") {
  for (auto [F, I, W] : {std::tuple{1.0, 1.0, 1.0}, {2.0, 1.0, 1.0}, {1.0, 2.0, 1.0}, {3.0, 2.0, 1.0}, {2.0, 2.0, 2.0}})
    for (int p : {2, 4, 8})
      for (int m : {p, 2 * p, 3 * p + 1}) {
        INFO("p=" << p << " m=" << m << " F=" << F << " I=" << I << " W=" << W);
        CHECK(sim_and_check(make("zb-h1", p, m), F, I, W) == m * (F + I + W) + (p - 1) * (F + I - W));
      }
}

TEST_CASE("ZB-H2: makespan = m(F+I+W)+(p-1)F when m >= 2p-1", "[simulator][closed-form]") {
  for (auto [F, I, W] : {std::tuple{1.0, 1.0, 1.0}, {2.0, 1.0, 1.0}, {1.0, 2.0, 1.0}, {3.0, 2.0, 1.0}, {1.0, 1.0, 2.0}})
    for (int p : {2, 4, 8})
      for (int m : {2 * p - 1, 2 * p, 4 * p}) {
        INFO("p=" << p << " m=" << m << " F=" << F << " I=" << I << " W=" << W);
        CHECK(sim_and_check(make("zb-h2", p, m), F, I, W) == m * (F + I + W) + (p - 1) * F);
      }
}
