#include "pippy/actors/pipeline.hpp"

#include <caf/all.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

#include "detail.hpp"
#include "pippy/core/error.hpp"

namespace pippy::actors {

std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

pipeline_handles spawn_pipeline(caf::actor_system& sys, const pipeline_setup& setup) {
  if (!setup.plan)
    throw input_error("pipeline_setup.plan: no schedule given");
  const schedule& s = *setup.plan;
  const auto& shape = s.shape;
  const int R = shape.num_ranks, S = shape.num_stages(), M = shape.num_microbatches;
  if (static_cast<int>(setup.executors.size()) != R)
    throw input_error("pipeline_setup.executors: " + std::to_string(setup.executors.size()) +
                      " executors for " + std::to_string(R) + " ranks");
  if (!setup.net)
    throw input_error("pipeline_setup.net: no transport given");
  if (static_cast<int>(s.ranks.size()) != R)
    throw input_error("pipeline_setup.plan: the schedule lists " + std::to_string(s.ranks.size()) + " ranks, its shape " +
                      std::to_string(R));

  pipeline_handles h;
  h.stages.resize(static_cast<std::size_t>(S));
  if (setup.track_microbatches) {
    std::vector<int> expected(static_cast<std::size_t>(M), 0);
    for (int r = 0; r < R; ++r)
      if (setup.executors[static_cast<std::size_t>(r)])
        for (const auto& a : s.ranks[static_cast<std::size_t>(r)])
          if (a.kind == action_kind::forward) // each local stage reports once per micro-batch
            ++expected[static_cast<std::size_t>(a.microbatch)];
    for (int m = 0; m < M; ++m)
      h.microbatches.push_back(detail::spawn_microbatch_actor(sys, m, expected[static_cast<std::size_t>(m)],
                                                               setup.supervisor));
  }
  std::vector<std::shared_ptr<detail::rank_context>> contexts;
  for (int r = 0; r < R; ++r) {
    if (!setup.executors[static_cast<std::size_t>(r)])
      continue;
    h.local_ranks.push_back(r);
    auto ctx = std::make_shared<detail::rank_context>();
    ctx->rank = r;
    ctx->num_stages = S;
    ctx->num_microbatches = M;
    ctx->list = &s.ranks[static_cast<std::size_t>(r)];
    ctx->microbatch_actors = h.microbatches;
    ctx->exec = setup.executors[static_cast<std::size_t>(r)];
    ctx->net = setup.net;
    ctx->supervisor = setup.supervisor;
    for (int st : shape.stages_of(r))
      h.stages[static_cast<std::size_t>(st)] = detail::spawn_stage_actor(sys, st, ctx);
    contexts.push_back(std::move(ctx));
  }
  // Wire: each rank sees its own stage actors (in-memory hand-over, turn passing); the transport
  // learns every local stage. Nothing runs before start().
  for (auto& ctx : contexts)
    for (int st : shape.stages_of(ctx->rank))
      ctx->stage_actors.emplace_back(st, h.stages[static_cast<std::size_t>(st)]);
  for (int st = 0; st < S; ++st)
    if (h.stages[static_cast<std::size_t>(st)])
      setup.net->attach(st, h.stages[static_cast<std::size_t>(st)]);
  h.plan_ = setup.plan;
  h.supervisor_ = setup.supervisor;
  return h;
}

void pipeline_handles::start() const {
  for (int r : local_ranks) {
    const auto& list = plan_->ranks[static_cast<std::size_t>(r)];
    if (list.empty()) {
      caf::anon_send(supervisor_, rank_finished{r, 0.0});
      continue;
    }
    caf::anon_send(stages[static_cast<std::size_t>(list.front().stage)], start_atom::value);
  }
}

void pipeline_handles::stop() const {
  for (const auto& a : stages)
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (const auto& a : microbatches)
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

} // namespace pippy::actors
