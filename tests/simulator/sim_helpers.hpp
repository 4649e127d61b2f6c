#pragma once
#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/simulator/simulator.hpp"

namespace pippy::test {

inline sim::sim_options uniform_options(const schedule& s, double F, double I, double W, double latency_us = 0) {
  stage_cost c{.F = F, .I = I, .W = W, .B = I + W, .U = 0};
  return sim::sim_options{.costs = uniform_costs(s.shape.num_stages(), c),
                          .links = sim::link_model::uniform(latency_us, 0)};
}

inline schedule make(const std::string& name, int p, int m, int v = 0) {
  return make_schedule(schedule_options{.name = name, .num_ranks = p, .num_microbatches = m, .stages_per_rank = v});
}

} // namespace pippy::test
