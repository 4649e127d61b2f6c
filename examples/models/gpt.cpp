#include "models/gpt.hpp"

#include <pippy/core/error.hpp>

#include <cmath>
#include <limits>

namespace pippy::models {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const gpt_config& c)
    : c_attn(register_module("c_attn", torch::nn::Linear(c.n_embd, 3 * c.n_embd))),
      c_proj(register_module("c_proj", torch::nn::Linear(c.n_embd, c.n_embd))), n_head(c.n_head) {}

torch::Tensor CausalSelfAttentionImpl::forward(torch::Tensor x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), hs = C / n_head;
  auto qkv = c_attn(x).split(C, 2);
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, n_head, hs}).transpose(1, 2); };
  torch::Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  torch::Tensor att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hs)));
  torch::Tensor mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).tril().logical_not();
  att = torch::softmax(att.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);
  torch::Tensor y = torch::matmul(att, v).transpose(1, 2).contiguous().view({B, T, C});
  return c_proj(y);
}

BlockImpl::BlockImpl(const gpt_config& c)
    : ln_1(register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd})))),
      ln_2(register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd})))),
      attn(register_module("attn", CausalSelfAttention(c))),
      fc(register_module("fc", torch::nn::Linear(c.n_embd, 4 * c.n_embd))),
      proj(register_module("proj", torch::nn::Linear(4 * c.n_embd, c.n_embd))) {}

torch::Tensor BlockImpl::forward(torch::Tensor x) {
  x = x + attn(ln_1(x));
  return x + proj(torch::gelu(fc(ln_2(x))));
}

GPTImpl::GPTImpl(const gpt_config& c)
    : config(c), tok_emb(register_module("tok_emb", torch::nn::Embedding(c.vocab_size, c.n_embd))),
      pos_emb(register_module("pos_emb", torch::nn::Embedding(c.block_size, c.n_embd))),
      blocks(register_module("blocks", torch::nn::ModuleList())),
      ln_f(register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd})))),
      lm_head(register_module("lm_head", std::make_shared<torch::nn::Module>("LMHead"))) {
  for (int64_t i = 0; i < c.n_layer; ++i) blocks->push_back(Block(c));
  // GPT-2's initialisation: weights N(0, 0.02), biases 0, the projections into the residual stream
  // scaled by 1/sqrt(2 n_layer); LayerNorms keep 1 and 0. The first loss is then near ln(vocab_size).
  torch::NoGradGuard no_grad;
  const double std = 0.02, residual_std = std / std::sqrt(2.0 * static_cast<double>(c.n_layer));
  tok_emb->weight.normal_(0, std);
  pos_emb->weight.normal_(0, std);
  for (const auto& block : *blocks) {
    auto* b = block->as<Block>();
    for (auto* lin : {b->attn->c_attn.get(), b->attn->c_proj.get(), b->fc.get(), b->proj.get()}) {
      const bool residual = lin == b->attn->c_proj.get() || lin == b->proj.get();
      lin->weight.normal_(0, residual ? residual_std : std);
      lin->bias.zero_();
    }
  }
  // Tie the LM head to the token embedding: one tensor, registered under both names.
  lm_head->register_parameter("weight", tok_emb->weight);
}

torch::Tensor GPTImpl::forward(torch::Tensor idx) {
  const int64_t T = idx.size(1);
  TORCH_CHECK(T <= config.block_size, "sequence length ", T, " exceeds block_size ", config.block_size);
  torch::Tensor pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
  torch::Tensor x = tok_emb(idx) + pos_emb(pos);
  for (const auto& block : *blocks) x = block->as<Block>()->forward(x);
  return torch::nn::functional::linear(ln_f(x), lm_head->named_parameters(false)["weight"]);
}

std::vector<int64_t> gpt_stage_first_blocks(const gpt_config& c, int num_stages) {
  if (num_stages < 1 || num_stages > c.n_layer)
    throw input_error("gpt: cannot split " + std::to_string(c.n_layer) + " blocks into " + std::to_string(num_stages) +
                      " stages (1.." + std::to_string(c.n_layer) + "): give --layers " + std::to_string(std::max(num_stages, 1)) +
                      " or more, or run fewer ranks or --stages-per-rank");
  std::vector<int64_t> first;
  for (int i = 1; i < num_stages; ++i)
    first.push_back(i * c.n_layer / num_stages);
  return first;
}

std::vector<std::pair<std::string, split_point>> gpt_manual_split(const gpt_config& c, int num_stages) {
  std::vector<std::pair<std::string, split_point>> points;
  for (int64_t b : gpt_stage_first_blocks(c, num_stages))
    points.emplace_back("blocks." + std::to_string(b), split_point::beginning);
  return points;
}

} // namespace pippy::models
