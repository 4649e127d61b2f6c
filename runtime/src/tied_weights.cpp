#include "pippy/runtime/tied_weights.hpp"

#include <set>

#include "pippy/core/error.hpp"

namespace pippy {

namespace {
// Above the tensor channels' tags (3 x 1024 x 4096 x 16).
int tied_tag(std::size_t group) { return 3 * 1024 * 4096 * 16 + static_cast<int>(group); }
} // namespace

tied_sync::tied_sync(std::vector<tied_group> groups, std::map<int, std::map<std::size_t, torch::Tensor>> local,
                     const pipeline_shape& shape, gloo_group* net)
    : groups_(std::move(groups)), local_(std::move(local)), shape_(shape), net_(net) {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    std::set<int> ranks;
    for (int s : groups_[g].stages)
      ranks.insert(shape_.rank_of(s));
    if (ranks.size() > 1 && !net_)
      for (int s : groups_[g].stages)
        if (!local_.count(s))
          throw input_error("tied weight '" + groups_[g].name + "': stage " + std::to_string(s) +
                            " holds it but is neither here nor reachable (no transport)");
  }
}

void tied_sync::before_step(int stage, std::function<void()> step) {
  std::map<int, std::function<void()>> ready;
  {
    std::lock_guard lock(mu_);
    waiting_[stage] = std::move(step);
    if (waiting_.size() < local_.size())
      return; // another local holder has not reached its U yet
    ready.swap(waiting_);
  }
  sum_and_step();
  for (auto& [s, f] : ready) // stage order
    f();
}

void tied_sync::sum_and_step() {
  torch::NoGradGuard no_grad;
  const int me = net_ ? net_->rank() : -1;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    // This process's partial sum, in stage order.
    torch::Tensor partial;
    std::vector<torch::Tensor> mine;
    for (int s : groups_[g].stages) {
      auto it = local_.find(s);
      if (it == local_.end())
        continue;
      auto& p = it->second.at(g);
      mine.push_back(p);
      auto grad = p.grad().defined() ? p.grad() : torch::zeros_like(p);
      partial = partial.defined() ? partial + grad : grad.clone();
    }
    if (mine.empty())
      continue;
    // Other processes holding the group: exchange partial sums, add them in rank order everywhere.
    std::set<int> ranks;
    for (int s : groups_[g].stages)
      ranks.insert(shape_.rank_of(s));
    torch::Tensor total = partial;
    if (net_ && ranks.size() > 1) {
      for (int r : ranks)
        if (r != me)
          net_->send({partial}, r, tied_tag(g));
      std::map<int, torch::Tensor> parts{{me, partial}};
      for (int r : ranks)
        if (r != me) {
          auto t = torch::empty_like(partial);
          net_->recv({t}, r, tied_tag(g)).get();
          parts[r] = t;
        }
      total = torch::Tensor();
      for (auto& [r, t] : parts)
        total = total.defined() ? total + t : t.clone();
    }
    for (auto& p : mine)
      p.mutable_grad() = total.clone();
  }
}

} // namespace pippy
