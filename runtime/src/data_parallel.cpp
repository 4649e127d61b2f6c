#include "pippy/runtime/data_parallel.hpp"

#include <algorithm>

#include "pippy/core/error.hpp"
#include "pippy/runtime/clock.hpp"
#include "pippy/runtime/collectives.hpp"

namespace pippy {

// ---- optimizer_shard

optimizer_shard optimizer_shard::of(std::int64_t total, int replica, int replicas) {
  optimizer_shard s{.total = total, .per = (total + replicas - 1) / replicas};
  s.begin = std::min(total, replica * s.per);
  s.count = std::min(total, s.begin + s.per) - s.begin;
  return s;
}

// ---- replica_grad_sync

replica_grad_sync::replica_grad_sync(replica_collectives& replicas, std::vector<torch::Tensor> params, int microbatches,
                                     grad_sync_mode mode, std::optional<optimizer_shard> slice,
                                     std::vector<torch::Tensor> whole)
    : replicas_(replicas), params_(std::move(params)), microbatches_(microbatches), mode_(mode),
      slice_(slice), whole_(std::move(whole)) {}

void replica_grad_sync::weight_grads_in() {
  if (++seen_ == microbatches_ && mode_ == grad_sync_mode::overlap)
    start();
}

namespace {
// The flattened whole of a stage's parameters, which the shards and the collectives address: each
// parameter's elements in order, one after another. Calls f(p, at) with where p starts in it.
template <class F>
void for_each_flattened(const std::vector<torch::Tensor>& params, F&& f) {
  std::int64_t at = 0;
  for (const auto& p : params) {
    f(p, at);
    at += p.numel();
  }
}
// Calls f(p, in_param, in_slice, n) for each parameter p with elements in `slice` of the flattened
// parameters: n of them, from p's element in_param on, at the slice's element in_slice on.
template <class F>
void for_each_in_slice(const std::vector<torch::Tensor>& params, const optimizer_shard& slice, F&& f) {
  for_each_flattened(params, [&](const torch::Tensor& p, std::int64_t at) {
    const std::int64_t from = std::max(at, slice.begin), to = std::min(at + p.numel(), slice.begin + slice.count);
    if (from < to)
      f(p, from - at, from - slice.begin, to - from);
  });
}
// Gradients whose parameters have one, flattened and concatenated in order.
torch::Tensor defined_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined())
      grads.push_back(p.grad().reshape(-1));
  return grads.empty() ? torch::Tensor() : torch::cat(grads);
}
// Writes `from` / n back into the gradients defined_grads read.
void set_defined_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& from, double n) {
  std::int64_t at = 0;
  for (const auto& p : params)
    if (p.grad().defined()) {
      const auto k = p.grad().numel();
      p.grad().copy_(from.narrow(0, at, k).view_as(p.grad()).div(n));
      at += k;
    }
}
} // namespace

void replica_grad_sync::before_step(const std::function<void()>& step) {
  if (!posted_)
    start();
  for (auto& f : pending_)
    window_.done_us = std::max(window_.done_us, f.get());
  if (!pending_.empty())
    windows_.push_back(window_);
  pending_.clear();
  posted_ = false;
  seen_ = 0;
  const double replicas = replicas_.world_size();
  if (!slice_) {
    if (bucket_.defined())
      set_defined_grads(params_, bucket_, replicas);
  } else {
    // This replica's slice: the only gradients its zero1_optimizer reads. Elsewhere they stay its own.
    if (slice_sum_.defined())
      for_each_in_slice(params_, *slice_, [&](const torch::Tensor& p, std::int64_t in_param, std::int64_t in_slice, std::int64_t n) {
        if (p.grad().defined())
          p.grad().view(-1).narrow(0, in_param, n).copy_(slice_sum_.narrow(0, in_slice, n).div(replicas));
      });
    if (whole_bucket_.defined())
      set_defined_grads(whole_, whole_bucket_, replicas);
  }
  step();
}

void replica_grad_sync::start() {
  window_ = {.posted_us = now_us()};
  if (!slice_) {
    bucket_ = defined_grads(params_);
    if (bucket_.defined()) { // else nothing to sum (every replica agrees: the same stage)
      pending_.push_back(replicas_.allreduce_sum_async({bucket_}));
      window_.bytes += bucket_.nbytes();
    }
  } else {
    if (slice_->total > 0) {
      // The flattened parameters' gradients (zeros where one has none), padded to equal slices.
      const std::int64_t D = replicas_.world_size();
      auto flat = torch::zeros({D * slice_->per}, params_.front().options());
      for_each_flattened(params_, [&](const torch::Tensor& p, std::int64_t at) {
        if (p.grad().defined())
          flat.narrow(0, at, p.numel()).copy_(p.grad().reshape(-1));
      });
      slice_sum_ = torch::empty({slice_->per}, flat.options());
      pending_.push_back(replicas_.reduce_scatter_sum_async(flat, slice_sum_));
      window_.bytes += flat.nbytes();
    }
    whole_bucket_ = defined_grads(whole_);
    if (whole_bucket_.defined()) {
      pending_.push_back(replicas_.allreduce_sum_async({whole_bucket_}));
      window_.bytes += whole_bucket_.nbytes();
    }
  }
  posted_ = true; // even with nothing to sum: before_step must not start again
}

// ---- zero1_optimizer

namespace {
torch::Tensor flat_copy(const std::vector<torch::Tensor>& ts) {
  std::vector<torch::Tensor> parts;
  for (const auto& t : ts)
    parts.push_back(t.detach().reshape(-1));
  return parts.empty() ? torch::zeros({0}) : torch::cat(parts);
}
} // namespace

zero1_optimizer::zero1_optimizer(
    std::vector<torch::Tensor> params, replica_collectives& replicas,
    const std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& make_inner)
    : torch::optim::Optimizer(std::move(params), std::make_unique<torch::optim::SGDOptions>(0.0)),
      replicas_(replicas) {
  const auto all = flat_copy(param_groups().front().params());
  part_ = optimizer_shard::of(all.numel(), replicas_.rank(), replicas_.world_size());
  slice_ = torch::zeros({part_.per}, all.options());
  slice_.narrow(0, 0, part_.count).copy_(all.narrow(0, part_.begin, part_.count));
  slice_.set_requires_grad(true);
  inner_ = make_inner({slice_});
}

torch::Tensor zero1_optimizer::step(LossClosure) {
  if (part_.total == 0) // a stage without parameters: nothing to step or gather (every replica alike)
    return {};
  torch::NoGradGuard no_grad;
  // The gradients of this slice are the replicas' average already (replica_grad_sync, before this
  // step), tied ones summed after that: read only them.
  auto g = torch::zeros_like(slice_);
  for_each_in_slice(param_groups().front().params(), part_, [&](const torch::Tensor& p, std::int64_t in_param, std::int64_t in_slice, std::int64_t n) {
    if (p.grad().defined())
      g.narrow(0, in_slice, n).copy_(p.grad().detach().reshape(-1).narrow(0, in_param, n));
  });
  slice_.mutable_grad() = g;
  inner_->step();
  // Every replica's updated slice into every copy of the parameters.
  const auto all = replicas_.allgather(slice_.detach()).narrow(0, 0, part_.total);
  for_each_flattened(param_groups().front().params(), [&](const torch::Tensor& p, std::int64_t at) {
    p.copy_(all.narrow(0, at, p.numel()).view_as(p));
  });
  return {};
}

void zero1_optimizer::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive inner;
  inner_->save(inner);
  archive.write("zero1_inner", inner);
  archive.write("zero1_shard", torch::tensor({part_.total, part_.per, part_.begin, part_.count, std::int64_t{replicas_.world_size()}}),
                /*is_buffer=*/true);
}

void zero1_optimizer::load(torch::serialize::InputArchive& archive) {
  torch::Tensor geometry;
  if (!archive.try_read("zero1_shard", geometry, /*is_buffer=*/true))
    throw input_error("its optimizer state is not a ZeRO-1 shard");
  const std::vector<std::int64_t> mine{part_.total, part_.per, part_.begin, part_.count, replicas_.world_size()};
  const auto g = geometry.to(torch::kLong).contiguous();
  const std::vector<std::int64_t> stored(g.data_ptr<std::int64_t>(), g.data_ptr<std::int64_t>() + g.numel());
  if (stored != mine) {
    auto describe = [](const std::vector<std::int64_t>& v) {
      return v.size() != 5 ? std::string("unreadable")
                           : "elements " + std::to_string(v[2]) + ".." + std::to_string(v[2] + v[3]) + " of " +
                                 std::to_string(v[0]) + " over " + std::to_string(v[4]) + " replicas";
    };
    throw input_error("its ZeRO-1 optimizer shard is " + describe(stored) + ", this replica's is " + describe(mine) +
                      " (resume with the same --dp and split)");
  }
  torch::serialize::InputArchive inner;
  archive.read("zero1_inner", inner);
  inner_->load(inner);
  torch::NoGradGuard no_grad;
  slice_.narrow(0, 0, part_.count).copy_(flat_copy(param_groups().front().params()).narrow(0, part_.begin, part_.count));
}

} // namespace pippy
