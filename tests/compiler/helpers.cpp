#include "helpers.hpp"

#include <catch2/catch.hpp>

namespace pippy::test {

split_run run_stages(pipe& p, const std::vector<torch::Tensor>& inputs,
                     const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& loss_fn) {
  const auto S = static_cast<size_t>(p.num_stages());
  std::vector<std::vector<torch::Tensor>> ins(S), outs(S), gouts(S);
  auto get = [&](const value_source& s) {
    return s.stage < 0 ? inputs.at(static_cast<size_t>(s.index))
                       : outs.at(static_cast<size_t>(s.stage)).at(static_cast<size_t>(s.index));
  };
  auto leaf = [](const torch::Tensor& t) {
    torch::Tensor x = t.detach();
    if (x.is_floating_point()) x.requires_grad_(true);
    return x;
  };
  for (size_t s = 0; s < S; ++s) {
    for (const auto& src : p.stage_inputs(static_cast<int>(s))) ins[s].push_back(leaf(get(src)));
    outs[s] = p.stage(static_cast<int>(s))->forward(ins[s]);
    gouts[s].resize(outs[s].size());
  }
  split_run r;
  for (const auto& src : p.outputs()) r.outputs.push_back(leaf(get(src)));
  r.loss = loss_fn(r.outputs);
  r.loss.backward();
  auto add = [&](const value_source& src, const torch::Tensor& g) {
    if (!g.defined() || src.stage < 0) return;
    auto& slot = gouts[static_cast<size_t>(src.stage)][static_cast<size_t>(src.index)];
    slot = slot.defined() ? slot + g : g;
  };
  for (size_t i = 0; i < r.outputs.size(); ++i) add(p.outputs()[i], r.outputs[i].grad());
  for (size_t s = S; s-- > 0;) {
    std::vector<torch::Tensor> roots, grads;
    for (size_t k = 0; k < outs[s].size(); ++k)
      if (outs[s][k].requires_grad() && gouts[s][k].defined()) {
        roots.push_back(outs[s][k]);
        grads.push_back(gouts[s][k]);
      }
    if (!roots.empty()) torch::autograd::backward(roots, grads);
    for (size_t j = 0; j < ins[s].size(); ++j) add(p.stage_inputs(static_cast<int>(s))[j], ins[s][j].grad());
  }
  for (auto& o : r.outputs) o = o.detach();
  return r;
}

bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol) {
  if (!a.defined() || !b.defined() || a.sizes() != b.sizes()) return false;
  // A nan or an inf is never close: an inf in b would scale the tolerance to inf, a nan drops out of <=.
  if (!torch::isfinite(a).all().item<bool>() || !torch::isfinite(b).all().item<bool>()) return false;
  const double diff = (a - b).abs().max().item<double>();
  const double scale = b.abs().max().item<double>();
  return diff <= rtol * scale + 1e-12;
}

std::map<std::string, torch::Tensor> grads_of(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& item : m.named_parameters(true)) g[item.key()] = item.value().grad();
  return g;
}

std::map<std::string, torch::Tensor> stage_grads(const pipe& p) {
  std::map<std::string, torch::Tensor> g;
  for (int s = 0; s < p.num_stages(); ++s)
    for (const auto& item : p.stage(s)->named_parameters(true)) {
      auto& slot = g[item.key()];
      const auto& grad = item.value().grad();
      // Every split test goes through here: a parameter left without a gradient is a lost one.
      INFO("stage " << s << " parameter " << item.key() << " got no gradient");
      REQUIRE(grad.defined());
      slot = slot.defined() ? slot + grad : grad.clone();
    }
  return g;
}

std::map<std::string, std::vector<int>> holders(const pipe& p) {
  std::map<std::string, std::vector<int>> h;
  for (int s = 0; s < p.num_stages(); ++s)
    for (const auto& item : p.stage(s)->named_parameters(true)) h[item.key()].push_back(s);
  return h;
}

std::map<std::string, torch::Tensor> check_stage_grads(const pipe& p, torch::nn::Module& unsplit,
                                                       const std::set<std::string>& aliases) {
  auto ref_grads = grads_of(unsplit);
  auto grads = stage_grads(p);
  if (aliases.empty())
    REQUIRE(grads.size() == ref_grads.size());
  for (const auto& [name, g] : ref_grads) {
    if (aliases.count(name))
      continue;
    INFO(name);
    REQUIRE(grads.count(name) == 1);
    CHECK(close(grads.at(name), g));
  }
  return ref_grads;
}

} // namespace pippy::test
