#include "pippy/runtime/step_driver.hpp"

#include <caf/all.hpp>
#include <caf/policy/work_sharing.hpp>
#include <caf/scheduler/coordinator.hpp>

#include <algorithm>
#include <atomic>

#include "pippy/core/error.hpp"
#include "pippy/core/validate.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/transports.hpp"

namespace pippy {

namespace {

std::atomic<long> spin_ns{0};

// CAF's work sharing (one queue, idle workers wait on a condition variable that every enqueue signals),
// except that an idle worker first polls the queue for a while: waking a sleeping thread costs tens of
// microseconds on a VM, as long as a small action.
class polling_work_sharing : public caf::policy::work_sharing {
public:
  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& q = d(self->parent());
    const auto budget = std::chrono::nanoseconds(spin_ns.load(std::memory_order_relaxed));
    if (budget.count() > 0) {
      const auto until = std::chrono::steady_clock::now() + budget;
      do {
        {
          std::unique_lock guard(q.lock);
          if (!q.queue.empty()) {
            caf::resumable* job = q.queue.front();
            q.queue.pop_front();
            return job;
          }
        }
        for (int i = 0; i < 64; ++i)
          __builtin_ia32_pause();
      } while (std::chrono::steady_clock::now() < until);
    }
    return work_sharing::dequeue(self);
  }
};

} // namespace

void configure_for_training(caf::actor_system_config& cfg, int max_threads, std::chrono::microseconds poll) {
  cfg.set("scheduler.max-threads", static_cast<size_t>(max_threads));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  // One shared queue whose idle workers sleep on a condition variable that every enqueue signals. The
  // work-stealing default polls (spinning beside libtorch on few cores), and a message sent from a
  // torch or receiver thread waited up to its 10 ms relaxed sleep: 4-7 ms between a stage's compute
  // and its send in measured traces.
  cfg.set("scheduler.policy", caf::atom("sharing"));
  spin_ns = std::chrono::nanoseconds(poll).count();
  if (poll.count() > 0)
    cfg.load<caf::scheduler::coordinator<polling_work_sharing>>();
}

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

step_backend cpu_backend(tensor_channel* channel) {
  step_backend b{.name = "actors"};
  if (channel)
    b.rank = channel->transport().rank();
  // Computing in the stage actor's thread saves two thread hand-offs per action; a compute thread that
  // must yield to the transport's threads (SCHED_IDLE) needs a thread of its own.
  const compute_thread where = compute_yields() ? compute_thread::own : compute_thread::caller;
  const bool sample_memory = channel != nullptr; // the process heap is this rank's alone
  b.make_executor = [where, sample_memory](int rank, std::vector<std::shared_ptr<stage_executor>> stages,
                                           const step_batch& batch, event_log& log) {
    return std::make_unique<torch_executor>(rank, std::move(stages), batch, log, where, sample_memory);
  };
  b.make_transport = [channel](const schedule& lowered, event_log& log) -> std::unique_ptr<actors::transport> {
    if (channel)
      return std::make_unique<gloo_transport>(*channel, lowered, log);
    return std::make_unique<memory_transport>();
  };
  return b;
}

namespace {

// The executors of the stages that `rank` runs in `plan` (the other entries null); throws input_error if
// one of them is missing from `stages`.
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

// One step of the spawned pipeline: start it, then wait until every local rank finished, a stage
// failed, or nothing arrived for `watchdog`. What failed, if anything.
std::optional<failure> run_actor_step(caf::scoped_actor& supervisor, const actors::pipeline_handles& actors,
                                      std::size_t local_ranks, std::chrono::milliseconds watchdog) {
  actors.start();
  std::size_t finished = 0;
  std::optional<failure> failed;
  while (finished < local_ranks && !failed) {
    supervisor->receive([&](const actors::rank_finished&) { ++finished; },
                        [&](const actors::stage_failed& f) { failed = f.error; },
                        [&](const actors::microbatch_finished&) {},
                        caf::after(watchdog) >> [&] {
                          failed = failure{failure_kind::timeout,
                                           "rank " + std::to_string(actors.local_ranks.front()) + ": no progress for " +
                                               std::to_string(watchdog.count()) + " ms"};
                        });
  }
  return failed;
}

} // namespace

step_driver::step_driver(caf::actor_system& sys, const schedule& compute_only,
                         std::vector<std::shared_ptr<stage_executor>> stages, step_backend backend,
                         std::chrono::milliseconds timeout, std::function<void(const failure&)> on_failure)
    : plan_(lower_for_actors(compute_only, stages.size(), "step_driver")), stages_(std::move(stages)),
      backend_(std::move(backend)),
      // Longer than the transport's own timeout, so that a lost peer is reported by the transport (naming
      // the peer) before this generic watchdog fires.
      watchdog_(timeout + std::max<std::chrono::milliseconds>(std::chrono::seconds(1), timeout / 2)),
      on_failure_(std::move(on_failure)), supervisor_(sys) {
  const int R = plan_.shape.num_ranks;
  if (backend_.rank) {
    if (*backend_.rank < 0 || *backend_.rank >= R)
      throw input_error("schedule '" + compute_only.name + "' has " + std::to_string(R) + " ranks, this process is rank " +
                        std::to_string(*backend_.rank));
    local_ranks_ = {*backend_.rank};
  } else {
    for (int r = 0; r < R; ++r)
      local_ranks_.push_back(r);
  }
  executors_.resize(static_cast<std::size_t>(R));
  std::vector<actors::executor*> execs(static_cast<std::size_t>(R), nullptr);
  for (int r : local_ranks_) {
    auto& e = executors_[static_cast<std::size_t>(r)];
    e = backend_.make_executor(r, stages_of_rank(plan_, stages_, r), batch_, log_);
    execs[static_cast<std::size_t>(r)] = e.get();
  }
  transport_ = backend_.make_transport(plan_, log_);
  actors_ = actors::spawn_pipeline(sys, actors::pipeline_setup{.plan = &plan_, .executors = execs,
                                                               .net = transport_.get(),
                                                               .supervisor = caf::actor_cast<caf::actor>(supervisor_),
                                                               .track_microbatches = false});
}

step_driver::~step_driver() {
  // The actors use the executors and the transport: wait until they are gone (a stage may still be in
  // an action after a failure elsewhere), but not forever.
  std::size_t alive = 0;
  for (const auto& a : actors_.stages)
    if (a) {
      supervisor_->monitor(a);
      ++alive;
    }
  actors_.stop();
  bool silent = false;
  while (alive > 0 && !silent)
    supervisor_->receive([&](const caf::down_msg&) { --alive; }, [](const actors::rank_finished&) {},
                         [](const actors::stage_failed&) {}, [](const actors::microbatch_finished&) {},
                         caf::after(std::chrono::seconds(10)) >> [&] { silent = true; });
}

std::optional<double> step_driver::step(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target,
                                        const std::vector<chunk_spec>& specs) {
  if (failed_)
    throw failure_error({failed_->kind, "an earlier step failed: " + failed_->message, failed_->peer});
  const auto& shape = plan_.shape;
  batch_ = make_step_batch(plan_, local_ranks_, inputs, target, specs, backend_.device);
  for (int r : local_ranks_) {
    for (int s : shape.stages_of(r))
      stages_[static_cast<std::size_t>(s)]->begin_step();
    executors_[static_cast<std::size_t>(r)]->begin_step();
  }
  transport_->begin_step(caf::actor_cast<caf::actor>(supervisor_));
  failed_ = run_actor_step(supervisor_, actors_, local_ranks_.size(), watchdog_);
  if (!failed_) // the transfers in flight end with the step; after a failure they may never end
    failed_ = transport_->end_step();
  if (failed_) {
    if (on_failure_)
      on_failure_(*failed_);
    if (failed_->kind == failure_kind::peer_lost || failed_->kind == failure_kind::timeout)
      throw peer_error(failed_->peer, failed_->message);
    throw failure_error(*failed_);
  }
  for (int r : local_ranks_)
    executors_[static_cast<std::size_t>(r)]->end_step();
  const int last = shape.num_stages() - 1;
  if (!runs_stage(shape, local_ranks_, last))
    return std::nullopt;
  return stages_[static_cast<std::size_t>(last)]->step_loss();
}

} // namespace pippy
