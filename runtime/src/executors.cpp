#include "pippy/runtime/executors.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <new>

#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/cpu_memory.hpp"
#include "pippy/traces/profile.hpp"
#include "pippy/runtime/tensor_channel.hpp"

namespace pippy {

// ---- compute_executor

compute_executor::compute_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages,
                                   const step_batch& batch, event_log& log, compute_thread where)
    : rank_(rank), stages_(std::move(stages)), batch_(batch), log_(log) {
  if (where == compute_thread::own)
    worker_ = std::thread([this] { loop(); });
}

compute_executor::~compute_executor() { stop_worker(); }

void compute_executor::stop_worker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable())
    worker_.join();
}

std::optional<actors::completion> compute_executor::run(const action& a, actors::payload_data input,
                                                        const caf::actor& reply_to) {
  if (!worker_.joinable())
    return compute(a, input);
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(job{a, std::move(input), reply_to});
  }
  cv_.notify_one();
  return std::nullopt;
}

void compute_executor::loop() {
  if (compute_yields() && !yield_to_other_threads())
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
    auto done = compute(j.act, j.input);
    j.input = {}; // the input's tensors go now, not when the next job replaces it
    caf::anon_send(j.reply_to, std::move(done));
  }
}

stage_action_result compute_executor::run_stage_action(const action& a,
                                                       const std::function<const cpu_tensors&()>& received) const {
  if (a.stage < 0 || static_cast<std::size_t>(a.stage) >= stages_.size() || !stages_[static_cast<std::size_t>(a.stage)])
    throw std::logic_error("rank " + std::to_string(rank_) + " has no stage " + std::to_string(a.stage));
  auto& ex = *stages_[static_cast<std::size_t>(a.stage)];
  const auto mb = static_cast<std::size_t>(a.microbatch);
  stage_action_result r;
  switch (a.kind) {
  case action_kind::forward: {
    const cpu_tensors& in = ex.is_first() ? batch_.inputs.at(mb) : received();
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
    const cpu_tensors& g = ex.is_last() ? cpu_tensors{} : received();
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
    r.began_us = ex.last_step_began_us();
    break;
  default:
    throw std::logic_error("executor asked to run " + to_string(a));
  }
  return r;
}

failure compute_executor::failure_of(const action& a, const std::exception& e, const std::string& where) const {
  const std::string who = "rank " + std::to_string(rank_) + ": " + to_string(a) + where + ": ";
  if (const auto* f = dynamic_cast<const failure_error*>(&e)) {
    failure out = f->what_failed();
    out.message = who + out.message;
    return out;
  }
  const bool oom = dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const c10::OutOfMemoryError*>(&e);
  return failure{oom ? failure_kind::out_of_memory : failure_kind::compute_error, who + e.what()};
}

// ---- torch_executor

torch_executor::torch_executor(int rank, std::vector<std::shared_ptr<stage_executor>> stages, const step_batch& batch,
                               event_log& log, compute_thread where, bool sample_memory)
    : compute_executor(rank, std::move(stages), batch, log, where), sample_memory_(sample_memory) {}

torch_executor::~torch_executor() { stop_worker(); }

actors::completion torch_executor::compute(const action& a, const actors::payload_data& input) {
  static const cpu_tensors none;
  actors::completion c;
  c.act = a;
  c.start_us = now_us();
  try {
    auto r = run_stage_action(a, [&]() -> const cpu_tensors& { return input.as<cpu_tensors>(none); });
    c.loss = r.loss;
    if (r.began_us) // the wait for the other ranks' gradients before it is idle time, not U's
      c.start_us = stage_executor::step_start_within(*r.began_us, c.start_us, now_us());
    if (r.output) {
      c.output_bytes = bytes_of(*r.output);
      if (a.kind == action_kind::forward)
        log_.set_activation_bytes(a.stage, c.output_bytes);
      c.output = actors::payload_data::of<cpu_tensors>(std::move(*r.output));
    }
  } catch (const std::exception& e) {
    c.error = failure_of(a, e);
  }
  c.end_us = now_us();
  log_.add(trace_event{.rank = rank_, .act = a, .start_us = c.start_us, .end_us = c.end_us,
                       .source = event_source::measured});
  if (sample_memory_)
    log_.add(memory_sample{.rank = rank_, .t_us = c.end_us, .bytes = cpu_tensor_bytes()});
  if (!c.error) {
    try { // the hook allocates the gradients' bucket and posts the collective: its failure is the action's
      recorded(a);
    } catch (const std::exception& e) {
      c.error = failure_of(a, e);
    }
  }
  return c;
}

} // namespace pippy
