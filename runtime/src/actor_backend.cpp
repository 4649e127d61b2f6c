#include "pippy/runtime/actor_backend.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cstdio>

#include "pippy/actors/pipeline.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/pipeline_engine.hpp"
#include "pippy/runtime/profile.hpp"

namespace pippy {

using tensors = std::vector<torch::Tensor>;

namespace {
actors::opaque wrap(tensors t) { return std::make_shared<const tensors>(std::move(t)); }
const tensors& unwrap(const actors::opaque& o) {
  static const tensors none;
  return o ? *static_cast<const tensors*>(o.get()) : none;
}
} // namespace

void configure_for_training(caf::actor_system_config& cfg, int max_threads) {
  cfg.set("scheduler.max-threads", static_cast<size_t>(max_threads));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  // One shared queue whose idle workers sleep on a condition variable that every enqueue signals. The
  // work-stealing default polls (spinning beside libtorch on few cores), and a message sent from a
  // torch or receiver thread waited up to its 10 ms relaxed sleep: 4-7 ms between a stage's compute
  // and its send in measured traces.
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

// ---- event_log

void event_log::add(const trace_event& e) {
  std::lock_guard lock(mu_);
  events_.push_back(e);
}
void event_log::add(const memory_sample& m) {
  std::lock_guard lock(mu_);
  memory_.push_back(m);
}
std::vector<memory_sample> event_log::memory() const {
  std::lock_guard lock(mu_);
  return memory_;
}
std::vector<trace_event> event_log::all() const {
  std::lock_guard lock(mu_);
  return events_;
}
void event_log::set_activation_bytes(int stage, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  activation_bytes_[stage] = bytes;
}
std::map<int, std::uint64_t> event_log::activation_bytes() const {
  std::lock_guard lock(mu_);
  return activation_bytes_;
}

// ---- threaded_executor

threaded_executor::threaded_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages,
                                     const step_batch& batch, event_log& log)
    : rank_(rank), stages_(std::move(stages)), batch_(batch), log_(log), yields_(compute_yields()),
      worker_([this] { loop(); }) {}

threaded_executor::~threaded_executor() { stop_worker(); }

void threaded_executor::stop_worker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable())
    worker_.join();
}

void threaded_executor::run(const action& a, actors::opaque input, const caf::actor& reply_to) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(job{a, std::move(input), reply_to});
  }
  cv_.notify_one();
}

void threaded_executor::loop() {
  if (yields_ && !yield_to_other_threads())
    std::fprintf(stderr, "warning: rank %d: PIPPY_COMPUTE_YIELDS: the compute thread cannot yield (SCHED_IDLE refused)\n",
                 rank_);
  for (;;) {
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty())
        return;
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    execute(j);
  }
}

// ---- torch_executor

torch_executor::torch_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages,
                               const step_batch& batch, event_log& log, bool sample_memory)
    : threaded_executor(rank, std::move(stages), batch, log), sample_memory_(sample_memory) {}

torch_executor::~torch_executor() { stop_worker(); }

stage_action_result threaded_executor::run_stage_action(const action& a,
                                                       const std::function<const tensors&()>& received) const {
  if (a.stage < 0 || static_cast<std::size_t>(a.stage) >= stages_.size() || !stages_[static_cast<std::size_t>(a.stage)])
    throw std::logic_error("rank " + std::to_string(rank_) + " has no stage " + std::to_string(a.stage));
  auto& ex = *stages_[static_cast<std::size_t>(a.stage)];
  const auto mb = static_cast<std::size_t>(a.microbatch);
  stage_action_result r;
  switch (a.kind) {
  case action_kind::forward: {
    const tensors& in = ex.is_first() ? batch_.inputs.at(mb) : received();
    auto out = ex.forward(a.microbatch, in, ex.is_last() ? batch_.targets.at(mb) : torch::Tensor(),
                          ex.is_last() ? batch_.scales.at(mb) : 1.0);
    if (ex.is_last() && !ex.forward_only())
      r.loss = ex.loss(a.microbatch).item<double>();
    else if (!ex.is_last())
      r.output = std::move(out);
    break;
  }
  case action_kind::backward_input:
  case action_kind::full_backward: {
    const tensors& g = ex.is_last() ? tensors{} : received();
    auto gi = a.kind == action_kind::full_backward ? ex.full_backward(a.microbatch, g)
                                                   : ex.backward_input(a.microbatch, g);
    if (!ex.is_first())
      r.output = std::move(gi);
    break;
  }
  case action_kind::backward_weight:
    ex.backward_weight(a.microbatch);
    break;
  case action_kind::optimizer_step:
    ex.step();
    break;
  default:
    throw std::logic_error("executor asked to run " + to_string(a));
  }
  return r;
}

void torch_executor::execute(job& j) {
  const action& a = j.act;
  actors::completion c;
  c.act = a;
  c.start_us = now_us();
  try {
    auto r = run_stage_action(a, [&]() -> const tensors& { return unwrap(j.input); });
    c.loss = r.loss;
    if (r.output) {
      c.output_bytes = bytes_of(*r.output);
      if (a.kind == action_kind::forward)
        log_.set_activation_bytes(a.stage, c.output_bytes);
      c.output = wrap(std::move(*r.output));
    }
  } catch (const std::exception& e) {
    c.error = "rank " + std::to_string(rank_) + ": " + to_string(a) + ": " + e.what();
  }
  c.end_us = now_us();
  log_.add(trace_event{.rank = rank_, .act = a, .start_us = c.start_us, .end_us = c.end_us,
                       .source = event_source::measured});
  if (sample_memory_)
    log_.add(memory_sample{.rank = rank_, .t_us = c.end_us, .bytes = heap_bytes_in_use()});
  caf::anon_send(j.reply_to, std::move(c));
}

// ---- memory_transport

void memory_transport::attach(int stage, const caf::actor& stage_actor) {
  std::lock_guard lock(mu_);
  if (stages_.size() <= static_cast<std::size_t>(stage))
    stages_.resize(static_cast<std::size_t>(stage) + 1);
  stages_[static_cast<std::size_t>(stage)] = stage_actor;
}

void memory_transport::send(actors::payload p, const caf::actor&) {
  caf::actor dst;
  {
    std::lock_guard lock(mu_);
    dst = stages_.at(static_cast<std::size_t>(p.dst_stage));
  }
  caf::anon_send(dst, std::move(p));
}

// ---- gloo_actor_transport

gloo_actor_transport::gloo_actor_transport(tensor_channel& channel, const schedule& lowered, event_log& log)
    : channel_(channel), plan_(lowered), log_(log), rank_(channel.transport().rank()) {
  stages_.resize(static_cast<std::size_t>(lowered.shape.num_stages()));
}

gloo_actor_transport::~gloo_actor_transport() {
  if (receiver_.joinable())
    receiver_.join();
}

void gloo_actor_transport::attach(int stage, const caf::actor& stage_actor) {
  std::lock_guard lock(mu_);
  stages_.at(static_cast<std::size_t>(stage)) = stage_actor;
}

void gloo_actor_transport::send(actors::payload p, const caf::actor&) {
  const bool fwd = p.kind == action_kind::send_f;
  const int dst = plan_.shape.rank_of(p.dst_stage);
  const double t0 = now_us();
  try {
    channel_.send(fwd ? tensor_channel::direction::forward : tensor_channel::direction::backward, p.src_stage,
                  p.microbatch, unwrap(p.data), dst);
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    if (send_error_.empty())
      send_error_ = e.what();
  }
  log_.add(trace_event{.rank = rank_, .act = {p.src_stage, p.kind, p.microbatch}, .start_us = t0,
                       .end_us = now_us(), .bytes = p.bytes, .peer = dst, .source = event_source::measured});
}

void gloo_actor_transport::begin_step(const caf::actor& supervisor) {
  if (receiver_.joinable())
    receiver_.join();
  receiver_ = std::thread([this, supervisor] {
    for (const auto& a : plan_.ranks[static_cast<std::size_t>(rank_)]) {
      if (a.kind != action_kind::recv_f && a.kind != action_kind::recv_b)
        continue;
      const bool fwd = a.kind == action_kind::recv_f;
      const int from = fwd ? a.stage - 1 : a.stage + 1;
      const int src = plan_.shape.rank_of(from);
      const double t0 = now_us();
      try {
        auto t = channel_.recv(fwd ? tensor_channel::direction::forward : tensor_channel::direction::backward,
                               from, a.microbatch, src);
        const auto bytes = bytes_of(t);
        log_.add(trace_event{.rank = rank_, .act = a, .start_us = t0, .end_us = now_us(), .bytes = bytes,
                             .peer = src, .source = event_source::measured});
        caf::actor dst;
        {
          std::lock_guard lock(mu_);
          dst = stages_.at(static_cast<std::size_t>(a.stage));
        }
        caf::anon_send(dst, actors::payload{.src_stage = from, .dst_stage = a.stage, .microbatch = a.microbatch,
                                            .kind = fwd ? action_kind::send_f : action_kind::send_b,
                                            .bytes = bytes, .data = wrap(std::move(t))});
      } catch (const std::exception& e) {
        caf::anon_send(supervisor, actors::stage_failed{rank_, a, e.what()});
        return;
      }
    }
  });
}

void gloo_actor_transport::end_step() {
  if (receiver_.joinable())
    receiver_.join();
  channel_.transport().flush();
  std::lock_guard lock(mu_);
  if (!send_error_.empty())
    throw peer_error(-1, send_error_);
}

// ---- pieces of a pipeline over the actors

schedule lower_for_actors(const schedule& compute_only, std::size_t num_stage_executors, const std::string& who) {
  if (compute_only.has_communication())
    throw input_error(who + " takes a compute-only schedule (it lowers communication itself)");
  compute_only.shape.validate();
  const int S = compute_only.shape.num_stages();
  if (static_cast<std::size_t>(S) != num_stage_executors)
    throw input_error("schedule '" + compute_only.name + "' has " + std::to_string(S) + " stages, " +
                      std::to_string(num_stage_executors) + " stage executors given");
  schedule plan = add_communication(compute_only);
  validate(plan);
  return plan;
}

std::vector<std::shared_ptr<stage_executor>> stages_of_rank(const schedule& plan,
                                                            const std::vector<std::shared_ptr<stage_executor>>& stages,
                                                            int rank) {
  std::vector<std::shared_ptr<stage_executor>> mine(static_cast<std::size_t>(plan.shape.num_stages()));
  for (int s : plan.shape.stages_of(rank)) {
    if (!stages[static_cast<std::size_t>(s)])
      throw input_error("rank " + std::to_string(rank) + " runs stage " + std::to_string(s) +
                        " but no executor was given for it");
    mine[static_cast<std::size_t>(s)] = stages[static_cast<std::size_t>(s)];
  }
  return mine;
}

std::string run_actor_step(caf::actor_system& sys, const schedule& plan, const std::vector<actors::executor*>& executors,
                           actors::transport& net, std::chrono::milliseconds watchdog,
                           const std::function<void(const caf::actor& supervisor)>& before_start,
                           const std::function<void(const std::string& why)>& on_failure) {
  int first_local = -1;
  std::size_t local = 0;
  for (std::size_t r = 0; r < executors.size(); ++r)
    if (executors[r]) {
      if (first_local < 0)
        first_local = static_cast<int>(r);
      ++local;
    }
  caf::scoped_actor self{sys};
  auto handles = actors::spawn_pipeline(sys, actors::pipeline_setup{.plan = &plan, .executors = executors, .net = &net,
                                                                    .supervisor = caf::actor_cast<caf::actor>(self),
                                                                    .track_microbatches = false});
  if (before_start)
    before_start(caf::actor_cast<caf::actor>(self));
  handles.start();
  std::size_t finished = 0;
  std::string failure;
  bool timed_out = false;
  while (finished < local && failure.empty() && !timed_out) {
    self->receive([&](const actors::rank_finished&) { ++finished; },
                  [&](const actors::stage_failed& f) { failure = f.error; },
                  [&](const actors::microbatch_finished&) {},
                  caf::after(watchdog) >> [&] { timed_out = true; });
  }
  if (!failure.empty() && on_failure)
    on_failure(failure);
  handles.stop();
  if (timed_out)
    return "rank " + std::to_string(first_local) + ": no progress for " + std::to_string(watchdog.count()) + " ms";
  return failure;
}

trace measured_trace(const schedule& plan, const event_log& log, const std::string& how) {
  trace t;
  t.num_ranks = plan.shape.num_ranks;
  t.run = plan.name + " R=" + std::to_string(plan.shape.num_ranks) + " M=" +
          std::to_string(plan.shape.num_microbatches) + " measured (" + how + ")";
  t.events = log.all();
  t.memory = log.memory();
  return t;
}

// ---- actor_pipeline

actor_pipeline::actor_pipeline(caf::actor_system& sys, const schedule& compute_only,
                               std::vector<std::shared_ptr<stage_executor>> stages, tensor_channel* channel,
                               std::chrono::milliseconds timeout, std::function<void(const std::string&)> on_failure)
    : sys_(sys), plan_(lower_for_actors(compute_only, stages.size(), "actor_pipeline")), stages_(std::move(stages)),
      channel_(channel), timeout_(timeout), on_failure_(std::move(on_failure)) {
  const int R = plan_.shape.num_ranks;
  if (channel_) {
    if (channel_->transport().world_size() != R)
      throw input_error("schedule '" + compute_only.name + "' needs " + std::to_string(R) + " ranks, WORLD_SIZE is " +
                        std::to_string(channel_->transport().world_size()));
    local_ranks_ = {channel_->transport().rank()};
    gloo_ = std::make_unique<gloo_actor_transport>(*channel_, plan_, log_);
  } else {
    for (int r = 0; r < R; ++r)
      local_ranks_.push_back(r);
    memory_ = std::make_unique<memory_transport>();
  }
  executors_.resize(static_cast<std::size_t>(R));
  for (int r : local_ranks_)
    executors_[static_cast<std::size_t>(r)] = std::make_unique<torch_executor>(
        r, stages_of_rank(plan_, stages_, r), batch_, log_, /*sample_memory=*/channel_ != nullptr);
}

actor_pipeline::~actor_pipeline() = default;

std::optional<double> actor_pipeline::step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                                           const std::vector<chunk_spec>& specs) {
  const auto& shape = plan_.shape;
  batch_ = make_step_batch(plan_, local_ranks_, inputs, target, specs);
  for (int r : local_ranks_)
    for (int s : shape.stages_of(r))
      stages_[static_cast<std::size_t>(s)]->begin_step();

  std::vector<actors::executor*> execs(static_cast<std::size_t>(shape.num_ranks), nullptr);
  for (int r : local_ranks_)
    execs[static_cast<std::size_t>(r)] = executors_[static_cast<std::size_t>(r)].get();
  actors::transport* net = gloo_ ? static_cast<actors::transport*>(gloo_.get()) : memory_.get();
  // Longer than the transport's own timeout, so that a lost peer is reported by the receiver (naming
  // the peer) before this generic watchdog fires.
  const auto watchdog = timeout_ + std::max<std::chrono::milliseconds>(std::chrono::seconds(1), timeout_ / 2);
  const std::string why = run_actor_step(
      sys_, plan_, execs, *net, watchdog,
      [&](const caf::actor& supervisor) {
        if (gloo_)
          gloo_->begin_step(supervisor);
      },
      on_failure_);
  if (!why.empty()) {
    if (gloo_) // maybe a lost peer: the receiver thread may still wait inside c10d; the caller should exit
      throw peer_error(-1, why);
    throw std::runtime_error(why);
  }
  if (gloo_)
    gloo_->end_step();
  const int last = shape.num_stages() - 1;
  if (!runs_stage(shape, local_ranks_, last))
    return std::nullopt;
  return stages_[static_cast<std::size_t>(last)]->step_loss();
}

trace actor_pipeline::events() const { return measured_trace(plan_, log_, "actors"); }

} // namespace pippy
