#pragma once
// A small GPT-style decoder: token + position embeddings, pre-norm blocks with causal self-attention
// and an MLP, final LayerNorm, and an LM head whose weight is the token embedding (tied: the same
// tensor is registered as tok_emb.weight and lm_head.weight). GPT-2's initialisation (N(0, 0.02)).
#include <pippy/compiler/compiler.hpp>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace pippy::models {

struct gpt_config {
  int64_t vocab_size = 64;
  int64_t block_size = 16;  // maximum sequence length
  int64_t n_layer = 4;
  int64_t n_head = 2;
  int64_t n_embd = 32;
};

struct CausalSelfAttentionImpl : torch::nn::Module {
  explicit CausalSelfAttentionImpl(const gpt_config& c);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  int64_t n_head;
};
TORCH_MODULE(CausalSelfAttention);

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(const gpt_config& c);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::Linear fc{nullptr}, proj{nullptr};
};
TORCH_MODULE(Block);

struct GPTImpl : torch::nn::Module {
  explicit GPTImpl(const gpt_config& c);
  // idx: int64 [batch, seq] token ids; returns logits [batch, seq, vocab].
  torch::Tensor forward(torch::Tensor idx);
  gpt_config config;
  torch::nn::Embedding tok_emb{nullptr}, pos_emb{nullptr};
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm ln_f{nullptr};
  // Holds only the tied weight (the same tensor as tok_emb->weight); the head is linear(x, weight).
  std::shared_ptr<torch::nn::Module> lm_head;
};
TORCH_MODULE(GPT);

// The manual split (`gpt --split manual`): stage i > 0 begins at block i * n_layer / num_stages (those
// first blocks, for i = 1..num_stages-1), so the embeddings go with the first blocks and ln_f + the tied
// head with the last. Throws input_error when num_stages is not in 1..n_layer.
std::vector<int64_t> gpt_stage_first_blocks(const gpt_config& c, int num_stages);
std::vector<std::pair<std::string, split_point>> gpt_manual_split(const gpt_config& c, int num_stages);

} // namespace pippy::models
