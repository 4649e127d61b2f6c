#include "pippy/simulator/simulator.hpp"

#include "pippy/traces/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <limits>
#include <queue>
#include <thread>
#include <type_traits>
#include <sstream>
#include <unordered_map>

#include "pippy/actors/pipeline.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/processor.hpp"
#include "pippy/core/replicas.hpp"
#include "pippy/core/validate.hpp"

namespace pippy::sim {

namespace {

// Virtual time: messages to actors, delivered in (time, posting order). Single-threaded.
class engine {
public:
  double now() const { return now_; }
  // The time of the next delivery, +infinity when nothing is queued.
  double next_time() const { return queue_.empty() ? std::numeric_limits<double>::infinity() : queue_.top().t; }
  void post(double t, const caf::actor& dst, caf::message msg) { queue_.push({t, seq_++, dst, std::move(msg), nullptr}); }
  // Something of the simulator's own due at `t` (an action whose end may still move), in the same order.
  struct timer {
    virtual ~timer() = default;
    virtual void fire() = 0;
  };
  void post(double t, timer& call) { queue_.push({t, seq_++, {}, {}, &call}); }

  // Delivers every message due at the earliest time; false when nothing is left.
  bool deliver_next(std::size_t& delivered) {
    if (queue_.empty())
      return false;
    now_ = queue_.top().t;
    while (!queue_.empty() && queue_.top().t == now_) {
      const entry e = queue_.top();
      queue_.pop();
      if (e.call) {
        e.call->fire(); // may post more for now_, delivered in this loop
      } else {
        e.dst->enqueue(nullptr, caf::make_message_id(), e.msg, nullptr);
        ++delivered; // messages only: the timers are the simulator's own
      }
    }
    return true;
  }

private:
  struct entry {
    double t;
    std::uint64_t seq;
    caf::actor dst;
    caf::message msg;
    timer* call;
  };
  struct later {
    bool operator()(const entry& a, const entry& b) const { return a.t > b.t || (a.t == b.t && a.seq > b.seq); }
  };
  double now_ = 0;
  std::uint64_t seq_ = 0;
  std::priority_queue<entry, std::vector<entry>, later> queue_;
};

// Hands recorded events and memory samples to the live hooks once the clock has reached their time
// (end_us of an event, t_us of a sample), in that time's order. Entries index the timeline's vectors,
// which only grow while the simulation runs.
class live_feed {
public:
  explicit live_feed(const sim_options& o) : o_(o), wall_start_(std::chrono::steady_clock::now()) {}
  void event_recorded(double end_us, std::size_t index) { pending_.push({end_us, seq_++, index, false}); }
  void sample_recorded(double t_us, std::size_t index) { pending_.push({t_us, seq_++, index, true}); }
  // Calls the hooks for everything due at or before `t`.
  void release(double t, const trace& timeline) {
    while (!pending_.empty() && pending_.top().t <= t) {
      const entry e = pending_.top();
      pending_.pop();
      if (o_.pace > 0) {
        const auto due = wall_start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                           std::chrono::duration<double, std::micro>(e.t / o_.pace));
        if (due > std::chrono::steady_clock::now())
          std::this_thread::sleep_until(due);
      }
      if (e.memory) {
        if (o_.on_memory)
          o_.on_memory(timeline.memory[e.index]);
      } else if (o_.on_event) {
        o_.on_event(timeline.events[e.index]);
      }
    }
  }

private:
  struct entry {
    double t;
    std::uint64_t seq;
    std::size_t index;
    bool memory;
  };
  struct later {
    bool operator()(const entry& a, const entry& b) const { return a.t > b.t || (a.t == b.t && a.seq > b.seq); }
  };
  const sim_options& o_;
  std::chrono::steady_clock::time_point wall_start_;
  std::uint64_t seq_ = 0;
  std::priority_queue<entry, std::vector<entry>, later> pending_;
};

struct shared_state {
  engine clock;
  trace timeline;
  rank_processors processors; // empty when nothing moves an action's end (no arrival costs, no shared CPUs)
  std::optional<out_of_memory> oom;
  live_feed* live = nullptr; // set when the options have live hooks or pacing
  // pp x dp: every replica runs (mesh rank d x R + r); their collectives are core's rule. A U waiting for
  // one parks on its mesh rank until the collective it waits for is complete.
  mesh_collectives replicas;
  struct parked_step {
    engine::timer* resume = nullptr;
    int stage = -1; // the stage whose collective it waits for
    mesh_collectives::collective kind = mesh_collectives::collective::sum;
  };
  std::vector<parked_step> parked; // by mesh rank

  // The parked U's whose collective is now complete run on, at this time.
  void wake_synced() {
    for (const auto& [st, c] : replicas.completed())
      for (int d = 0; d < replicas.replicas(); ++d) {
        parked_step& p = parked[static_cast<std::size_t>(replicas.mesh_rank(d, st))];
        if (p.resume && p.stage == st && p.kind == c) {
          clock.post(clock.now(), *p.resume);
          p = {};
        }
      }
    replicas.clear_completed();
  }

  void record(const trace_event& e) {
    timeline.events.push_back(e);
    if (live)
      live->event_recorded(e.end_us, timeline.events.size() - 1);
  }
  void record(const memory_sample& m) {
    timeline.memory.push_back(m);
    if (live)
      live->sample_recorded(m.t_us, timeline.memory.size() - 1);
  }
};

// The executor of one rank in virtual time: an action takes its cost; memory follows core's rule
// (rank_memory), sampled where it changes.
class sim_executor final : public actors::executor, engine::timer {
public:
  // forward_only: the plan has no backward (inference), so F holds its activations only while it runs.
  // Rank `rank` of replica `replica` (mesh rank replica x R + rank; replica 0 without pp x dp).
  sim_executor(shared_state& st, const sim_options& o, const pipeline_shape& shape, int rank, int replica, bool forward_only)
      : st_(st), costs_(o.costs), shape_(shape), rank_(replica * shape.num_ranks + rank), replica_(replica),
        forward_only_(forward_only),
        memory_(static_memory_bytes(o.costs, per_replica(o.memory, o.data_parallel), shape, rank), o.memory.cap_bytes),
        dp_(o.data_parallel), resume_(*this, &sim_executor::resume_step), gathered_(*this, &sim_executor::end_gathered) {
    st_.record(memory_sample{rank_, 0.0, memory_.bytes()});
  }

  std::optional<actors::completion> run(const action& a, actors::payload_data, const caf::actor& reply_to) override {
    const double t0 = st_.clock.now() + (is_compute(a.kind) ? costs_.action_overhead_us : 0.0);
    if (a.kind == action_kind::optimizer_step && dp_.replicas > 1) { // posts the all-reduce unless a backward did
      st_.replicas.reach_step(replica_, a.stage, t0);
      st_.wake_synced();
      step_ = parked_step{a, reply_to, t0};
      resume_step();
      return std::nullopt;
    }
    begin(a, reply_to, t0);
    return std::nullopt; // completes in virtual time
  }

  rank_stats stats() const {
    return rank_stats{.rank = rank_, .peak_activations = memory_.peak_activations(),
                      .peak_memory_bytes = memory_.peak_bytes()};
  }

private:
  // U of pp x dp, due at t0: it starts once the collectives it waits for are complete (parked till then).
  struct parked_step {
    action act;
    caf::actor reply_to;
    double t0 = 0;
  };
  void resume_step() {
    const action& a = step_.act;
    if (!st_.replicas.summed(a.stage)) {
      st_.parked[static_cast<std::size_t>(rank_)] = {.resume = &resume_, .stage = a.stage};
      return;
    }
    const double t0 = std::max(step_.t0, st_.replicas.synced(replica_, a.stage));
    // The all-reduce on the rank's communication stream, posted to done, as the runtime's step gate records it.
    if (const std::uint64_t bytes = st_.replicas.bytes(a.stage); bytes > 0)
      st_.record(trace_event{.rank = rank_, .act = {a.stage, action_kind::reduce_grad, no_microbatch},
                             .start_us = st_.replicas.posted_at(replica_, a.stage),
                             .end_us = st_.replicas.synced(replica_, a.stage), .bytes = bytes});
    begin(a, step_.reply_to, t0);
  }
  // ZeRO-1's U, computed at computed_: its all-gather is over.
  void end_gathered() { complete(st_.replicas.gather_end(running_.done.act.stage, computed_)); }
  struct resume_timer final : engine::timer {
    resume_timer(sim_executor& e, void (sim_executor::*f)()) : owner(e), call(f) {}
    void fire() override { (owner.*call)(); }
    sim_executor& owner;
    void (sim_executor::*call)();
  };

  // Action `a` starts at t0 (after the overhead).
  void begin(const action& a, const caf::actor& reply_to, double t0) {
    const memory_effect effect = memory_effect_of(costs_, a, forward_only_);
    actors::completion done{.act = a, .start_us = t0, .end_us = t0};
    if (!memory_.start(effect)) {
      out_of_memory oom{rank_, a, memory_.needed(effect), memory_.cap_bytes(), t0};
      if (!st_.oom || oom.before(*st_.oom))
        st_.oom = oom;
      done.error = failure{failure_kind::out_of_memory, oom.message()};
      st_.timeline.markers.push_back({.rank = rank_, .t_us = t0, .name = "OOM", .detail = done.error->message});
      st_.clock.post(t0, reply_to, caf::make_message(std::move(done)));
      return;
    }
    if (effect.activations_at_start > 0)
      st_.record(memory_sample{rank_, t0, memory_.bytes()});
    running_ = running_action{.done = std::move(done), .effect = effect, .reply_to = reply_to};
    double cost = costs_.engine_us(a, shape_, replica_);
    if (a.kind == action_kind::optimizer_step && dp_.replicas > 1)
      cost = st_.replicas.step_compute(cost); // ZeRO-1: its 1/D, then the all-gather (finish)
    if (st_.processors.empty()) {
      finish(t0 + cost);
    } else { // arrivals, or actions starting beside it on a shared CPU, may still lengthen it: settle its end when the clock is there
      st_.clock.post(st_.processors.begin(rank_, t0, cost, costs_.action_overhead_us), *this);
    }
  }

  struct running_action {
    actors::completion done;
    memory_effect effect;
    caf::actor reply_to;
  };
  void fire() override {
    const double t1 = st_.processors.end(rank_);
    if (t1 > st_.clock.now()) { // lengthened since
      st_.clock.post(t1, *this);
      return;
    }
    st_.processors.finish(rank_);
    finish(t1);
  }
  // The running action is done computing at t1: it ends then, or (ZeRO-1's U) once its all-gather is over.
  void finish(double t1) {
    const action& a = running_.done.act;
    if (a.kind == action_kind::optimizer_step && dp_.sharded()) {
      st_.replicas.post_gather(a.stage, t1);
      st_.wake_synced();
      if (!st_.replicas.gathered(a.stage)) { // off the processor, waiting for the other replicas
        computed_ = t1;
        st_.parked[static_cast<std::size_t>(rank_)] = {
            .resume = &gathered_, .stage = a.stage, .kind = mesh_collectives::collective::gather};
        return;
      }
      t1 = st_.replicas.gather_end(a.stage, t1);
    }
    complete(t1);
  }
  // The running action ends at t1.
  void complete(double t1) {
    actors::completion& done = running_.done;
    const action& a = done.act;
    done.end_us = t1;
    if ((a.kind == action_kind::full_backward || a.kind == action_kind::backward_weight) && dp_.replicas > 1) {
      st_.replicas.weight_grads_in(replica_, a.stage, t1); // the step's last posts the all-reduce (overlap)
      st_.wake_synced();
    }
    memory_.end(running_.effect);
    if (running_.effect.changes_at_end)
      st_.record(memory_sample{rank_, t1, memory_.bytes()});
    if (a.kind == action_kind::forward)
      done.output_bytes = costs_.transfer_bytes(action_kind::send_f, a.stage, a.microbatch);
    if (is_input_backward(a.kind) && a.stage > 0)
      done.output_bytes = costs_.transfer_bytes(action_kind::send_b, a.stage, a.microbatch);
    st_.record(trace_event{.rank = rank_, .act = a, .start_us = done.start_us, .end_us = t1});
    st_.clock.post(t1, running_.reply_to, caf::make_message(std::move(done)));
  }

  shared_state& st_;
  const cost_table& costs_;
  const pipeline_shape& shape_;
  const int rank_;    // in the mesh
  const int replica_; // 0 without pp x dp
  const bool forward_only_;
  rank_memory memory_;
  const data_parallel_model dp_;
  resume_timer resume_, gathered_;
  double computed_ = 0; // when a ZeRO-1 U that waits for its all-gather was done computing
  parked_step step_;
  running_action running_; // one at a time per rank
};

// Links in virtual time: latency + bytes / bandwidth; a directed link carries one transfer at a time.
// Only the rank pairs that carry a transfer have an entry (a pipeline rank talks to a few neighbours):
// memory linear in ranks, where an R x R table took 1 GB at R = 8000 and overflowed int at R = 46341.
// pp x dp: one per replica, whose rank r is mesh rank mesh_base + r.
class sim_transport final : public actors::transport {
public:
  sim_transport(shared_state& st, const link_model& links, const cost_table& costs, const pipeline_shape& shape,
                int mesh_base = 0)
      : st_(st), links_(links), costs_(costs), shape_(shape), mesh_base_(mesh_base),
        stages_(static_cast<std::size_t>(shape.num_stages())) {
    link_free_.reserve(2 * static_cast<std::size_t>(shape.num_ranks)); // next and previous rank, in a pipeline
  }

  void attach(int stage, const caf::actor& a) override { stages_[static_cast<std::size_t>(stage)] = a; }
  // The sender waits for its posting (costs_.send_posting) or, with blocking sends, for delivery too.
  bool blocking() const override { return links_.blocking_send || costs_.posting_costs(); }
  void begin_step(const caf::actor&) override {} // virtual links cannot fail
  std::optional<failure> end_step() override { return std::nullopt; }

  void send(actors::payload p, const caf::actor& sender) override {
    const int src = shape_.rank_of(p.src_stage), dst = shape_.rank_of(p.dst_stage);
    double& free_at = link_free_[static_cast<std::uint64_t>(src) * static_cast<std::uint64_t>(shape_.num_ranks) +
                                 static_cast<std::uint64_t>(dst)]; // 0 (free) when first used
    const transfer_time tt =
        time_transfer(st_.clock.now(), free_at, p.bytes, link_between(costs_, links_, src, dst, mesh_base_));
    free_at = tt.link_free;
    const double start = tt.start, arrive = tt.arrive;
    const action a{p.src_stage, p.kind, p.microbatch};
    const std::uint64_t bytes = p.bytes;
    st_.record(trace_event{.rank = mesh_base_ + src, .act = a, .start_us = start, .end_us = arrive, .bytes = bytes,
                           .peer = mesh_base_ + dst});
    const caf::actor& to = stages_[static_cast<std::size_t>(p.dst_stage)];
    st_.clock.post(arrive, to, caf::make_message(std::move(p)));
    if (!st_.processors.empty())
      st_.processors.arrive(mesh_base_ + dst, arrive);
    if (blocking()) {
      const double posted = st_.clock.now() + costs_.send_posting_us(bytes);
      const double done = links_.blocking_send ? std::max(arrive, posted) : posted;
      st_.clock.post(done, sender, caf::make_message(actors::send_done{a, done, {}}));
    }
  }

private:
  shared_state& st_;
  const link_model& links_;
  const cost_table& costs_;
  const pipeline_shape& shape_;
  const int mesh_base_;
  std::vector<caf::actor> stages_;
  std::unordered_map<std::uint64_t, double> link_free_; // src * R + dst -> when that link is free
};

struct outcome {
  std::vector<char> rank_done;
  std::vector<double> microbatch_end;
  std::vector<std::string> failures;
};

// One per replica, whose ranks are mesh ranks mesh_base + r: a micro-batch is finished when every
// replica has finished it.
caf::behavior collector(caf::event_based_actor*, std::shared_ptr<outcome> out, int mesh_base) {
  return {
      [out, mesh_base](const actors::rank_finished& f) { out->rank_done[static_cast<std::size_t>(mesh_base + f.rank)] = 1; },
      [out](const actors::stage_failed& f) { out->failures.push_back(f.error.message); },
      [out](const actors::microbatch_finished& f) {
        double& end = out->microbatch_end[static_cast<std::size_t>(f.microbatch)];
        end = std::max(end, f.end_us);
      },
  };
}

} // namespace

sim_result simulate(const schedule& input, const sim_options& options) {
  const auto t_begin = std::chrono::steady_clock::now();
  validate(input);
  const int D = options.data_parallel.replicas;
  if (D < 1)
    throw input_error("data parallel: replicas must be at least 1, got " + std::to_string(D));
  validate_models(input.shape, options.costs, options.links, options.memory, D);
  const schedule s = input.has_communication() ? input : add_communication(input);
  const auto& shape = s.shape;
  const int R = shape.num_ranks, Q = R * D; // pp x dp: every replica, rank r of replica d as mesh rank d x R + r
  const auto t_run = std::chrono::steady_clock::now();

  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  sim_result result;
  std::exception_ptr hook_error;
  {
    caf::actor_system sys{cfg};
    auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
    shared_state st;
    live_feed feed(options);
    if (options.on_event || options.on_memory || options.pace > 0)
      st.live = &feed;
    st.timeline.run = s.name + " R=" + std::to_string(R) + " M=" + std::to_string(shape.num_microbatches) + " simulated";
    if (D > 1)
      st.timeline.run += " x " + std::to_string(D) + " replicas";
    st.timeline.num_ranks = Q;
    st.timeline.replicas = D;
    st.processors = rank_processors(options.costs, Q);
    st.replicas.reset(shape, options.costs, options.links, options.data_parallel);
    st.parked.assign(static_cast<std::size_t>(Q), {});
    const bool forward_only = runs_forward_only(s);
    std::vector<std::unique_ptr<sim_executor>> execs;
    std::vector<std::unique_ptr<sim_transport>> nets;
    std::vector<actors::pipeline_handles> replicas;
    auto out = std::make_shared<outcome>();
    out->rank_done.assign(static_cast<std::size_t>(Q), 0);
    out->microbatch_end.assign(static_cast<std::size_t>(shape.num_microbatches), -1.0);
    std::vector<caf::actor> sups;
    for (int d = 0; d < D; ++d) {
      std::vector<actors::executor*> exec_ptrs;
      for (int r = 0; r < R; ++r) {
        execs.push_back(std::make_unique<sim_executor>(st, options, shape, r, d, forward_only));
        exec_ptrs.push_back(execs.back().get());
      }
      nets.push_back(std::make_unique<sim_transport>(st, options.links, options.costs, shape, d * R));
      sups.push_back(sys.spawn(collector, out, d * R));
      replicas.push_back(actors::spawn_pipeline(
          sys, actors::pipeline_setup{.plan = &s, .executors = exec_ptrs, .net = nets.back().get(), .supervisor = sups.back(),
                                      .track_microbatches = options.track_microbatches}));
      nets.back()->begin_step(sups.back());
    }
    for (const auto& handles : replicas)
      handles.start();
    result.actor_runs += sched.run();
    std::size_t next_report = options.progress_every;
    auto run_events = [&]<bool live>(std::bool_constant<live>) {
      while (true) {
        if constexpr (live) // what ends before the clock moves on has finished
          feed.release(st.clock.next_time(), st.timeline);
        if (!st.clock.deliver_next(result.events))
          break;
        result.actor_runs += sched.run();
        if (options.on_progress && result.events >= next_report) {
          options.on_progress(result.events, st.clock.now());
          next_report = result.events + options.progress_every;
        }
      }
    };
    try {
      if (st.live)
        run_events(std::true_type{});
      else
        run_events(std::false_type{});
    } catch (...) {
      hook_error = std::current_exception(); // shut the actors down first, then rethrow
    }
    for (auto& net : nets)
      if (auto lost = net->end_step())
        out->failures.push_back(lost->message);
    for (const auto& handles : replicas)
      handles.stop();
    for (const auto& sup : sups)
      caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
    if (hook_error)
      std::rethrow_exception(hook_error);

    result.actions = s.num_actions() * static_cast<std::size_t>(D); // every replica's
    result.oom = st.oom;
    result.completed = std::all_of(out->rank_done.begin(), out->rank_done.end(), [](char c) { return c != 0; });
    result.microbatch_end_us = out->microbatch_end;
    std::vector<rank_stats> from_executors;
    for (auto& e : execs)
      from_executors.push_back(e->stats());
    // Order the trace by rank, then start time (stable: ties keep the deterministic posting order).
    // Compute events of a rank are already in start order; only transfers need sorting.
    std::vector<std::vector<trace_event>> by_rank(static_cast<std::size_t>(Q));
    for (auto& e : st.timeline.events)
      by_rank[static_cast<std::size_t>(e.rank)].push_back(e);
    st.timeline.events.clear();
    for (auto& list : by_rank) {
      auto earlier = [](const trace_event& a, const trace_event& b) { return a.start_us < b.start_us; };
      if (!std::is_sorted(list.begin(), list.end(), earlier))
        std::stable_sort(list.begin(), list.end(), earlier);
      st.timeline.events.insert(st.timeline.events.end(), list.begin(), list.end());
    }
    std::stable_sort(st.timeline.memory.begin(), st.timeline.memory.end(), [](const memory_sample& a, const memory_sample& b) {
      return a.rank != b.rank ? a.rank < b.rank : a.t_us < b.t_us;
    });
    result.timeline = std::move(st.timeline);
    // Step time, busy time and bubbles: traces' definitions, the same code that reads a measured trace.
    const auto m = compute_metrics(result.timeline, metrics_depth::summary);
    result.makespan_us = m.step_time_us;
    result.step_us = m.step_time_us + options.costs.step_overhead_us;
    result.bubble_fraction = m.bubble_fraction;
    result.steady_bubble_fraction = m.steady_bubble_fraction;
    for (int r = 0; r < Q; ++r) {
      const auto& rm = m.ranks[static_cast<std::size_t>(r)];
      rank_stats rs = from_executors[static_cast<std::size_t>(r)];
      rs.busy_us = rm.busy_us;
      rs.idle_us = m.step_time_us - rm.busy_us;
      rs.bubble_fraction = rm.bubble_fraction;
      rs.first_start_us = rm.first_start_us;
      rs.end_us = rm.last_end_us;
      result.ranks.push_back(rs);
    }
  }
  const auto t_end = std::chrono::steady_clock::now();
  result.validate_wall_s = std::chrono::duration<double>(t_run - t_begin).count();
  result.run_wall_s = std::chrono::duration<double>(t_end - t_run).count();
  // Steps back to back, drawn one by one with noise: core's flat evaluator, which gives the actors' times.
  flat_evaluator ev;
  const expected_step e = expected_step_us(ev, s, options.costs, options.links, options.memory, options.data_parallel,
                                           options.noise_samples);
  result.expected_step_us = e.step_us;
  result.expected_step_error_us = e.standard_error_us;
  result.noise_samples = e.samples;
  return result;
}

} // namespace pippy::sim
