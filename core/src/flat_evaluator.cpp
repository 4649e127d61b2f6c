#include "pippy/core/flat_evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "pippy/core/dependencies.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/limits.hpp"

namespace pippy {
namespace {

enum op_class : std::uint8_t { compute, send, receive };
constexpr double not_yet = -1; // a slot whose input has not arrived (times are never negative)
constexpr std::int32_t stopped = -2; // blocked_ of a rank that ran out of memory: nothing wakes it
constexpr std::int32_t computing = -3; // blocked_ of a rank whose action's end may still move (processors_)

} // namespace

std::uint64_t flat_result::peak_memory_bytes() const {
  std::uint64_t peak = 0;
  for (const auto& r : ranks)
    peak = std::max(peak, r.peak_memory_bytes);
  return peak;
}

expected_step expected_step_us(flat_evaluator& ev, const schedule& s, const cost_table& costs, const link_model& links,
                               const memory_model& memory, const data_parallel_model& dp, int max_samples) {
  if (max_samples < 1 || max_samples > limits::max_noise_samples)
    throw input_error("noise samples must be from 1 to " + std::to_string(limits::max_noise_samples) + " (got " +
                      std::to_string(max_samples) + ")");
  const bool noisy = !costs.noise.empty();
  // The runtime's gap holds the next first action's overhead, which the evaluator adds itself.
  const double gap = std::max(0.0, costs.step_overhead_us - costs.action_overhead_us);
  std::vector<double> release(static_cast<std::size_t>(s.shape.num_ranks) * static_cast<std::size_t>(std::max(1, dp.replicas)), 0.0);
  cost_table draw = costs;
  double previous_start = 0, sum = 0, sum_sq = 0;
  std::vector<double> periods; // from the second step's start on
  auto mean = [&] { return sum / static_cast<double>(periods.size()); };
  auto standard_error = [&] {
    const auto n = static_cast<double>(periods.size());
    return n > 1 ? std::sqrt(std::max(0.0, (sum_sq - sum * sum / n) / (n - 1)) / n) : 0.0;
  };
  for (int k = 0;; ++k) {
    draw.seed = costs.seed + static_cast<std::uint64_t>(noisy ? k : 0);
    const flat_result& r = ev.evaluate(s, draw, links, memory, dp, release);
    if (!r.completed) // stopped by memory: the step that ran is all there is
      return {.step_us = r.makespan_us + costs.step_overhead_us};
    double start = std::numeric_limits<double>::infinity();
    for (std::size_t q = 0; q < release.size(); ++q) {
      start = std::min(start, r.ranks[q].first_start_us);
      release[q] = std::max(release[q], r.ranks[q].last_end_us + gap);
    }
    if (k >= 2) {
      const double p = start - previous_start;
      periods.push_back(p);
      sum += p, sum_sq += p * p;
    }
    previous_start = start;
    const std::size_t n = periods.size();
    if (noisy && (static_cast<int>(n) >= max_samples || (n >= 16 && standard_error() <= 0.002 * mean())))
      return {.step_us = mean(), .standard_error_us = standard_error(), .samples = static_cast<int>(n)};
    if (!noisy && n >= 2 && std::abs(periods[n - 1] - periods[n - 2]) <= 1e-9 * std::max(1.0, periods[n - 1]))
      return {.step_us = periods[n - 1]};
    if (!noisy && k + 1 >= max_steady_chain) // no repeat (a chain that alternates): the mean period
      return {.step_us = mean()};
  }
}

const flat_result& flat_evaluator::evaluate(const schedule& s, const cost_table& costs, const link_model& links,
                                            const memory_model& memory, const data_parallel_model& dp,
                                            std::span<const double> release_us) {
  if (dp.replicas < 1)
    throw input_error("data parallel: replicas must be at least 1, got " + std::to_string(dp.replicas));
  validate_models(s.shape, costs, links, memory, dp.replicas);
  if (s.has_communication()) {
    evaluated_ = &s;
  } else {
    lowered_ = add_communication(s);
    evaluated_ = &lowered_;
  }
  const auto mesh_ranks = static_cast<std::size_t>(s.shape.num_ranks) * static_cast<std::size_t>(dp.replicas);
  if (!release_us.empty() && release_us.size() != mesh_ranks)
    throw input_error("release times: " + std::to_string(release_us.size()) + " for " + std::to_string(mesh_ranks) +
                      " ranks" + (dp.replicas > 1 ? " (pipeline ranks x replicas)" : ""));
  prepare(*evaluated_, costs, links, memory, dp);
  processors_ = rank_processors(costs, static_cast<int>(mesh_ranks));
  run(links.blocking_send, costs.action_overhead_us, release_us);
  return result_;
}

// Flattens the lowered schedule into ops: what each action waits for and fills follows the stage
// actor (core's inputs_of for what it waits for; F's output goes to stage + 1, I/B's gradient to
// stage - 1, in memory on the same rank, else by the rank's SEND).
void flat_evaluator::prepare(const schedule& s, const cost_table& costs, const link_model& links,
                             const memory_model& memory, const data_parallel_model& dp) {
  const pipeline_shape& shape = s.shape;
  const int R = shape.num_ranks, S = shape.num_stages(), M = shape.num_microbatches;
  const int D = std::max(1, dp.replicas), Q = R * D; // the mesh's ranks: replica d's rank r is d x R + r
  if (static_cast<int>(s.ranks.size()) != R)
    throw input_error("schedule: " + std::to_string(s.ranks.size()) + " rank lists for " + std::to_string(R) + " ranks");
  const bool forward_only = runs_forward_only(s);
  link_.clear();
  link_index_.clear();
  // Micro-batch first: the ranks work on nearby micro-batches at any time, so their slots share lines.
  auto fwd = [&](int stage, int mb) { return static_cast<std::int32_t>(mb * 2 * S + stage); };
  auto bwd = [&](int stage, int mb) { return static_cast<std::int32_t>(mb * 2 * S + S + stage); };
  // Asked once per (kind, stage), not per action: the neighbour input each waits for (inputs_of; the
  // micro-batch only passes through: 1 forward data, 2 a gradient, 0 none), each stage's rank, and
  // the link each SEND_F / SEND_B of a stage takes (-1 until its first).
  const auto kinds_by_stage = static_cast<std::size_t>(num_action_kinds) * static_cast<std::size_t>(S);
  neighbour_input_.assign(kinds_by_stage, 0);
  for (int k = 0; k < num_action_kinds; ++k)
    for (int st = 0; st < S; ++st)
      for (const dependency& d : inputs_of(action{st, static_cast<action_kind>(k), 0}, S))
        if (d.from_neighbour()) // at most one input comes from a neighbour stage
          neighbour_input_[static_cast<std::size_t>(k * S + st)] = d.forward_data() ? 1 : 2;
  stage_rank_.resize(static_cast<std::size_t>(S));
  for (int st = 0; st < S; ++st)
    stage_rank_[static_cast<std::size_t>(st)] = shape.rank_of(st);
  send_link_.assign(static_cast<std::size_t>(2 * S), -1);
  ops_.clear();
  ops_.reserve(s.num_actions() * static_cast<std::size_t>(D));
  offset_.assign(static_cast<std::size_t>(Q) + 1, 0);
  for (int r = 0; r < R; ++r) {
    offset_[static_cast<std::size_t>(r)] = ops_.size();
    for (const action& a : s.ranks[static_cast<std::size_t>(r)]) {
      const bool needs_mb = a.kind != action_kind::optimizer_step;
      if (a.stage < 0 || a.stage >= S || (needs_mb && (a.microbatch < 0 || a.microbatch >= M)))
        throw input_error("schedule: rank " + std::to_string(r) + " has " + to_string(a) + ", outside " +
                          std::to_string(S) + " stages and " + std::to_string(M) + " micro-batches");
      op o;
      o.stage = a.stage;
      if (dp.replicas > 1)
        o.dp_role = a.kind == action_kind::full_backward || a.kind == action_kind::backward_weight ? 1
                    : a.kind == action_kind::optimizer_step                                         ? 2
                                                                                                    : 0;
      if (const int in = neighbour_input_[static_cast<std::size_t>(static_cast<int>(a.kind) * S + a.stage)]; in != 0)
        o.wait = in == 1 ? fwd(a.stage, a.microbatch) : bwd(a.stage, a.microbatch);
      if (is_compute(a.kind)) {
        o.cls = compute;
        o.cost = costs.engine_us(a, shape);
        const memory_effect e = memory_effect_of(costs, a, forward_only);
        o.held = e.held_at_start, o.freed = e.freed_at_end;
        o.activations_at_start = static_cast<std::int8_t>(e.activations_at_start);
        o.activations_freed_at_end = static_cast<std::int8_t>(e.activations_freed_at_end);
        const int to = a.kind == action_kind::forward ? a.stage + 1 : is_input_backward(a.kind) ? a.stage - 1 : -1;
        if (to >= 0 && to < S && stage_rank_[static_cast<std::size_t>(to)] == r) { // handed over in memory
          o.fill = a.kind == action_kind::forward ? fwd(to, a.microbatch) : bwd(to, a.microbatch);
          o.fill_rank = r;
        }
      } else if (is_send(a.kind)) {
        const bool forward = a.kind == action_kind::send_f;
        const int to = forward ? a.stage + 1 : a.stage - 1;
        if (to < 0 || to >= S)
          throw input_error("schedule: rank " + std::to_string(r) + " has " + to_string(a) + ", which sends to no stage");
        o.cls = send;
        o.held = costs.transfer_bytes(a.kind, a.stage, a.microbatch);
        o.cost = costs.send_posting_us(o.held);
        o.fill = forward ? fwd(to, a.microbatch) : bwd(to, a.microbatch);
        o.fill_rank = stage_rank_[static_cast<std::size_t>(to)];
        std::int32_t& link = send_link_[static_cast<std::size_t>((forward ? 0 : S) + a.stage)];
        if (link < 0) {
          const int src = stage_rank_[static_cast<std::size_t>(a.stage)];
          const auto key = static_cast<std::uint64_t>(src) * static_cast<std::uint64_t>(Q) +
                           static_cast<std::uint64_t>(o.fill_rank);
          const auto [it, added] = link_index_.try_emplace(key, static_cast<std::int32_t>(link_.size()));
          if (added)
            link_.push_back(link_between(costs, links, src, o.fill_rank));
          link = it->second;
        }
        o.link = link;
      } else {
        o.cls = receive;
      }
      ops_.push_back(o);
    }
  }
  // The other replicas (pp x dp): replica 0's ops on their own slots, ranks and links, each drawing its
  // own jitter and noise.
  const bool draws = costs.jitter != 0 || !costs.noise.empty();
  const auto replica_slots = static_cast<std::int32_t>(2 * S * M);
  for (int d = 1; d < D; ++d) {
    std::vector<std::int32_t> links_of(link_.size(), -1); // replica 0's link -> this replica's
    for (int r = 0; r < R; ++r) {
      const int q = d * R + r;
      offset_[static_cast<std::size_t>(q)] = ops_.size();
      const auto& list = s.ranks[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < list.size(); ++i) {
        op o = ops_[offset_[static_cast<std::size_t>(r)] + i];
        if (o.wait >= 0)
          o.wait += d * replica_slots;
        if (o.fill >= 0) {
          o.fill += d * replica_slots;
          o.fill_rank += d * R;
        }
        if (o.cls == compute && draws)
          o.cost = costs.engine_us(list[i], shape, d);
        if (o.cls == send) {
          std::int32_t& link = links_of[static_cast<std::size_t>(o.link)];
          if (link < 0) {
            const int src = stage_rank_[static_cast<std::size_t>(list[i].stage)], dst = o.fill_rank - d * R;
            const auto key = static_cast<std::uint64_t>(q) * static_cast<std::uint64_t>(Q) +
                             static_cast<std::uint64_t>(o.fill_rank);
            link = static_cast<std::int32_t>(link_.size());
            link_index_.emplace(key, link);
            link_.push_back(link_between(costs, links, src, dst, d * R));
          }
          o.link = link;
        }
        ops_.push_back(o);
      }
    }
  }
  offset_[static_cast<std::size_t>(Q)] = ops_.size();
  // For settling an action's end early (run): the ranks that send to each rank, and the rank that
  // fills each (direction, stage) group of slots across ranks (-1: none, or in memory).
  into_offset_.assign(static_cast<std::size_t>(Q) + 1, 0);
  for (const auto& [key, index] : link_index_)
    ++into_offset_[key % static_cast<std::uint64_t>(Q) + 1];
  for (int q = 0; q < Q; ++q)
    into_offset_[static_cast<std::size_t>(q) + 1] += into_offset_[static_cast<std::size_t>(q)];
  sender_.assign(link_index_.size(), 0);
  std::vector<std::size_t> next(into_offset_.begin(), into_offset_.end() - 1);
  for (const auto& [key, index] : link_index_)
    sender_[next[key % static_cast<std::uint64_t>(Q)]++] = static_cast<std::int32_t>(key / static_cast<std::uint64_t>(Q));
  producer_.assign(static_cast<std::size_t>(2 * S), -1); // forward inputs of stage s come from s - 1, gradients from s + 1
  for (int st = 0; st < S; ++st) {
    const auto at = static_cast<std::size_t>(st);
    if (st > 0 && stage_rank_[at - 1] != stage_rank_[at])
      producer_[at] = stage_rank_[at - 1];
    if (st + 1 < S && stage_rank_[at + 1] != stage_rank_[at])
      producer_[static_cast<std::size_t>(S) + at] = stage_rank_[at + 1];
  }
  link_free_.assign(link_.size(), 0.0);
  memory_.clear();
  for (int q = 0; q < Q; ++q) // stages_of lists a rank's V stages directly: linear in ranks
    memory_.emplace_back(static_memory_bytes(costs, per_replica(memory, dp), shape, q % R), memory.cap_bytes);
  slot_.assign(static_cast<std::size_t>(2 * S) * static_cast<std::size_t>(M) * static_cast<std::size_t>(D), not_yet);
  sync_base_ = static_cast<std::int32_t>(slot_.size());
  pipeline_ranks_ = R;
  replicas_.reset(shape, costs, links, dp);
}

// Runs each rank's ops in order until one waits for an input that is not there yet; filling an input
// wakes the rank waiting for exactly it. Every time is a max and a sum of times that are already
// final, so the order in which ranks run changes nothing. With a cost per arrival or ranks sharing a CPU
// (shared_processor) a compute action's end is not final when it starts, unless no transfer can still
// arrive before it and it has its processor to itself (settled): otherwise the rank pauses there, and the paused actions are finished in the order of their
// ends once no rank can run, as the simulator's clock does, so that every transfer arriving before an
// end has been posted by then.
void flat_evaluator::run(bool blocking_send, double overhead_us, std::span<const double> release_us) {
  const auto R = offset_.size() - 1;
  pc_.assign(offset_.begin(), offset_.end() - 1);
  blocked_.assign(R, -1);
  gathering_.assign(R, 0);
  if (release_us.empty())
    now_.assign(R, 0.0);
  else
    now_.assign(release_us.begin(), release_us.end());
  start_.resize(ops_.size()); // no fill: time_of reads only what ran
  end_.resize(ops_.size());
  result_.ranks.assign(R, flat_rank_result{});
  result_.oom.reset();
  result_.actions = ops_.size();
  ready_.clear();
  for (std::size_t r = R; r-- > 0;)
    ready_.push_back(static_cast<int>(r));
  constexpr double inf = std::numeric_limits<double>::infinity();
  double first = inf, last = -inf;
  const op* const ops = ops_.data();
  double* const slot = slot_.data();
  std::int32_t* const blocked = blocked_.data();
  auto fill = [&](const op& o, double t) {
    slot[o.fill] = t;
    if (blocked[o.fill_rank] == o.fill) {
      blocked[o.fill_rank] = -1;
      ready_.push_back(o.fill_rank);
    }
  };
  auto effect_of = [](const op& o) {
    return memory_effect{.held_at_start = o.held, .freed_at_end = o.freed, .activations_at_start = o.activations_at_start,
                         .activations_freed_at_end = o.activations_freed_at_end};
  };
  const auto R_pipe = static_cast<std::size_t>(pipeline_ranks_);
  const bool sharded = replicas_.sharded();
  const auto S = static_cast<std::int32_t>(stage_rank_.size());
  const int D = replicas_.replicas();
  // What a U of replica d waits for, as its blocked_: its stage's all-reduce, or (ZeRO-1) its all-gather.
  auto collective_slot = [&](int d, int stage, mesh_collectives::collective c) {
    return sync_base_ + (c == mesh_collectives::collective::gather ? D + d : d) * S + stage;
  };
  // The U's waiting for collectives that are now complete run on.
  auto wake_synced = [&] {
    for (const auto& [st, c] : replicas_.completed())
      for (int d = 0; d < D; ++d) {
        const auto q = static_cast<std::size_t>(replicas_.mesh_rank(d, st));
        if (blocked[q] == collective_slot(d, st, c)) {
          blocked[q] = -1;
          ready_.push_back(static_cast<int>(q));
        }
      }
    replicas_.clear_completed();
  };
  // Compute op pc of rank r ends at t1 (it started at start_[pc]).
  auto finish = [&](std::size_t r, std::size_t pc, double t1) {
    const op& o = ops[pc];
    if (o.dp_role == 1) {
      replicas_.weight_grads_in(static_cast<int>(r / R_pipe), o.stage, t1);
      wake_synced();
    }
    memory_[r].end(effect_of(o));
    end_[pc] = t1;
    flat_rank_result& rr = result_.ranks[r];
    rr.busy_us += t1 - start_[pc];
    rr.last_end_us = t1;
    first = std::min(first, start_[pc]), last = std::max(last, t1);
    if (o.fill >= 0)
      fill(o, t1);
  };
  // Compute op pc of rank r is done computing at t1: it ends then, or (ZeRO-1's U) once its all-gather is
  // over. Returns its end, or -1 while it waits for the other replicas (rank r then blocks on it).
  auto done_computing = [&](std::size_t r, std::size_t pc, double t1) {
    const op& o = ops[pc];
    if (o.dp_role == 2 && sharded) {
      replicas_.post_gather(o.stage, t1);
      wake_synced();
      if (!replicas_.gathered(o.stage)) {
        gathering_[r] = 1;
        blocked[r] = collective_slot(static_cast<int>(r / R_pipe), o.stage, mesh_collectives::collective::gather);
        return -1.0;
      }
      t1 = replicas_.gather_end(o.stage, t1);
    }
    finish(r, pc, t1);
    return t1;
  };
  // With processors (rank_processors), a lower bound on when rank q can still post an arrival while rank `self`
  // runs an action to t1: a computing rank sends after its end so far, a ready one after its clock, a
  // blocked one after the rank that fills its input does (self: after t1). Longer chains give no bound.
  const bool charged = !processors_.empty();
  const auto groups = static_cast<std::int32_t>(producer_.size());
  auto horizon = [&](std::size_t q, std::size_t self, double t1) {
    for (int hops = 0; hops < 4; ++hops) {
      if (q == self)
        return t1;
      const std::int32_t b = blocked[q];
      if (b == computing)
        return processors_.end(static_cast<int>(q));
      if (b == stopped || (b == -1 && pc_[q] == offset_[q + 1]))
        return inf;
      if (b == -1)
        return now_[q];
      if (b >= sync_base_) // a U waiting for its replicas
        break;
      const std::int32_t p = producer_[static_cast<std::size_t>(b % groups)];
      if (p < 0)
        break;
      q = q / R_pipe * R_pipe + static_cast<std::size_t>(p); // the producer in the same replica
    }
    return -inf;
  };
  // Rank r's action ending at t1 is final now if no transfer can still arrive on r before t1: the
  // order-free rule of shared_processor then holds without waiting for the clock.
  auto settled = [&](std::size_t r, double t1) {
    for (std::size_t i = into_offset_[r]; i < into_offset_[r + 1]; ++i)
      if (horizon(static_cast<std::size_t>(sender_[i]), r, t1) < t1)
        return false;
    return true;
  };
  // The paused ranks' ends so far, in a tournament tree over the ranks: a leaf is inf while its rank
  // is not paused, a node the earlier of its children (ties to the lower rank), paused_[1] the earliest.
  std::size_t leaves = 1;
  while (leaves < R)
    leaves *= 2;
  paused_.resize(2 * leaves);
  for (std::size_t i = 0; i < leaves; ++i)
    paused_[leaves + i] = {inf, static_cast<std::int32_t>(i)};
  for (std::size_t i = leaves; i-- > 1;)
    paused_[i] = paused_[2 * i];
  auto set_paused_end = [&](std::size_t r, double t1) {
    paused_rank up{t1, static_cast<std::int32_t>(r)};
    std::size_t i = leaves + r;
    paused_[i] = up;
    for (; i > 1; i /= 2) {
      const paused_rank& other = paused_[i ^ 1];
      if (other.end < up.end || (other.end == up.end && other.rank < up.rank))
        up = other;
      paused_[i / 2] = up;
    }
  };
  while (!ready_.empty() || paused_[1].end != inf) {
    if (ready_.empty()) { // the earliest end: every transfer arriving before it is posted
      const auto ended = static_cast<std::size_t>(paused_[1].rank);
      const double t1 = paused_[1].end;
      if (const double moved = processors_.end(static_cast<int>(ended)); moved > t1) { // lengthened since
        set_paused_end(ended, moved);
        continue;
      }
      processors_.finish(static_cast<int>(ended));
      const double t_end = done_computing(ended, pc_[ended], t1);
      if (t_end < 0) { // its U waits for the all-gather, off the processor
        set_paused_end(ended, inf);
        continue;
      }
      // Its leaf stays until it pauses again or stops, before the tree is read again: ready_ runs it first.
      now_[ended] = t_end;
      ++pc_[ended];
      blocked[ended] = -1;
      ready_.push_back(static_cast<int>(ended));
      continue;
    }
    const auto r = static_cast<std::size_t>(ready_.back());
    ready_.pop_back();
    std::size_t pc = pc_[r];
    const std::size_t end = offset_[r + 1];
    double now = now_[r];
    rank_memory& mem = memory_[r];
    for (; pc < end; ++pc) {
      const op& o = ops[pc];
      if (o.dp_role == 2 && gathering_[r]) { // ZeRO-1's U, computed, woken by its all-gather's end
        gathering_[r] = 0;
        now = replicas_.gather_end(o.stage, now);
        finish(r, pc, now);
        continue;
      }
      double t = now; // when the rank decides to run it: its clock, or the arrival of its input
      if (o.wait >= 0) {
        const double in = slot[o.wait];
        if (in == not_yet) {
          blocked[r] = o.wait;
          break;
        }
        t = std::max(t, in);
      }
      if (o.cls == compute) {
        double t0 = t + overhead_us;
        double cost = o.cost;
        if (o.dp_role == 2) { // U waits for the replicas' all-reduce (posted now unless at the last backward)
          const int d = static_cast<int>(r / R_pipe);
          replicas_.reach_step(d, o.stage, t0);
          wake_synced();
          if (!replicas_.summed(o.stage)) {
            blocked[r] = collective_slot(d, o.stage, mesh_collectives::collective::sum);
            break;
          }
          t0 = std::max(t0, replicas_.synced(d, o.stage));
          cost = replicas_.step_compute(cost); // ZeRO-1: its 1/D, then the all-gather (done_computing)
        }
        const memory_effect effect = effect_of(o);
        if (!mem.start(effect)) {
          const out_of_memory oom{static_cast<int>(r), evaluated_->ranks[r % R_pipe][pc - offset_[r]], mem.needed(effect),
                                  mem.cap_bytes(), t0};
          if (!result_.oom || oom.before(*result_.oom))
            result_.oom = oom;
          blocked[r] = stopped;
          break;
        }
        start_[pc] = t0;
        double t1 = t0 + cost;
        if (charged) {
          t1 = processors_.begin(static_cast<int>(r), t0, cost, overhead_us);
          // A shared CPU's actions wait for the clock: what starts inside them moves their end.
          if (processors_.shared(static_cast<int>(r)) || !settled(r, t1)) { // paused until the clock reaches its end
            set_paused_end(r, t1);
            blocked[r] = computing;
            // Paused ranks resume in turn, too many streams for the hardware to prefetch. Only within
            // the rank's own ops: past the last one there is nothing to read.
            for (std::size_t k = pc + 1; k < std::min(pc + 5, end); ++k)
              __builtin_prefetch(ops + k);
            if (pc + 1 < end) {
              __builtin_prefetch(start_.data() + pc + 1, 1);
              __builtin_prefetch(end_.data() + pc + 1, 1);
            }
            break;
          }
          processors_.finish(static_cast<int>(r));
        }
        if (const double t_end = done_computing(r, pc, t1); t_end >= 0) {
          now = t_end;
        } else {
          now = t1;
          break;
        }
      } else if (o.cls == send) {
        double& free_at = link_free_[static_cast<std::size_t>(o.link)];
        const transfer_time tt = time_transfer(t, free_at, o.held, link_[static_cast<std::size_t>(o.link)]);
        free_at = tt.link_free;
        if (charged)
          processors_.arrive(o.fill_rank, tt.arrive);
        start_[pc] = tt.start, end_[pc] = tt.arrive;
        first = std::min(first, tt.start), last = std::max(last, tt.arrive);
        fill(o, tt.arrive);
        // Posting holds the rank; a blocking send holds it until delivery too.
        now = blocking_send ? std::max(tt.arrive, t + o.cost) : t + o.cost;
      } else {
        start_[pc] = end_[pc] = t;
        now = t;
      }
    }
    pc_[r] = pc;
    now_[r] = now;
    if (charged && blocked[r] != computing && paused_[leaves + r].end != inf)
      set_paused_end(r, inf);
  }
  // Totals, as traces' compute_metrics defines them from the same events.
  result_.makespan_us = first == inf ? 0.0 : last - first;
  result_.completed = !result_.oom;
  double busy = 0;
  for (std::size_t r = 0; r < R; ++r) {
    auto& rr = result_.ranks[r];
    result_.completed = result_.completed && pc_[r] == offset_[r + 1];
    for (std::size_t i = offset_[r]; i < pc_[r]; ++i) // the rank's first compute action that ran
      if (ops_[i].cls == compute) {
        rr.first_start_us = start_[i];
        break;
      }
    rr.peak_activations = memory_[r].peak_activations();
    rr.peak_memory_bytes = memory_[r].peak_bytes();
    rr.bubble_fraction = result_.makespan_us > 0 ? 1.0 - rr.busy_us / result_.makespan_us : 0.0;
    busy += rr.busy_us;
  }
  result_.bubble_fraction =
      result_.makespan_us > 0 && R > 0 ? 1.0 - busy / (result_.makespan_us * static_cast<double>(R)) : 0.0;
}

} // namespace pippy
