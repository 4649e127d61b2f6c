#include "pippy/runtime/microbatch.hpp"

#include <algorithm>

#include <string>

#include "pippy/core/error.hpp"

namespace pippy {

std::vector<std::vector<argument>> split_arguments(const std::vector<argument>& args, int chunks,
                                                   const std::vector<chunk_spec>& specs) {
  if (!specs.empty() && specs.size() != args.size())
    throw input_error("chunk specs: " + std::to_string(specs.size()) + " given for " +
                      std::to_string(args.size()) + " arguments");
  std::vector<std::vector<argument>> out(static_cast<std::size_t>(chunks),
                                         std::vector<argument>(args.size()));
  std::optional<int64_t> rows;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto* t = std::get_if<torch::Tensor>(&args[i]);
    const chunk_spec spec = specs.empty() ? chunk_spec{} : specs[i];
    if (t == nullptr || !spec.split_dim) { // pass through / replicate
      for (auto& mb : out)
        mb[i] = args[i];
      continue;
    }
    const int64_t dim = *spec.split_dim;
    if (dim < 0 || dim >= t->dim())
      throw input_error("argument " + std::to_string(i) + ": split dimension " +
                        std::to_string(dim) + " out of range for a " + std::to_string(t->dim()) +
                        "-d tensor");
    const int64_t n = t->size(dim);
    if (rows && *rows != n)
      throw input_error("argument " + std::to_string(i) + " has " + std::to_string(n) +
                        " rows to split, another split argument has " + std::to_string(*rows));
    rows = n;
    const auto sizes = chunk_sizes(n, chunks);
    int64_t start = 0;
    for (std::size_t m = 0; m < out.size(); ++m) {
      out[m][i] = t->narrow(dim, start, sizes[m]);
      start += sizes[m];
    }
  }
  return out;
}

std::vector<std::vector<torch::Tensor>> split_tensors(const std::vector<torch::Tensor>& args,
                                                      int chunks,
                                                      const std::vector<chunk_spec>& specs) {
  const std::vector<argument> a(args.begin(), args.end());
  auto split = split_arguments(a, chunks, specs);
  std::vector<std::vector<torch::Tensor>> out;
  for (auto& mb : split) {
    auto& row = out.emplace_back();
    for (auto& x : mb)
      row.push_back(std::get<torch::Tensor>(x));
  }
  return out;
}

std::vector<torch::Tensor> merge_outputs(const std::vector<std::vector<torch::Tensor>>& outputs,
                                         int64_t dim) {
  if (outputs.empty())
    return {};
  std::vector<torch::Tensor> merged;
  for (std::size_t i = 0; i < outputs.front().size(); ++i) {
    std::vector<torch::Tensor> parts;
    for (const auto& mb : outputs) {
      if (mb.size() != outputs.front().size())
        throw input_error("merge_outputs: micro-batches returned different numbers of outputs");
      parts.push_back(mb[i]);
    }
    merged.push_back(torch::cat(parts, dim));
  }
  return merged;
}

bool runs_stage(const pipeline_shape& shape, const std::vector<int>& ranks, int stage) {
  return std::find(ranks.begin(), ranks.end(), shape.rank_of(stage)) != ranks.end();
}

step_batch make_step_batch(const schedule& plan, const std::vector<int>& ranks, const std::vector<torch::Tensor>& inputs,
                           const torch::Tensor& target, const std::vector<chunk_spec>& specs,
                           std::optional<torch::Device> device) {
  const auto& shape = plan.shape;
  const int M = shape.num_microbatches;
  step_batch batch;
  batch.scales.assign(static_cast<std::size_t>(M), 1.0 / M);
  if (runs_stage(shape, ranks, 0)) {
    if (device) {
      std::vector<torch::Tensor> on_dev;
      for (const auto& t : inputs)
        on_dev.push_back(t.defined() ? t.to(*device) : t);
      batch.inputs = split_tensors(on_dev, M, specs);
    } else {
      batch.inputs = split_tensors(inputs, M, specs);
    }
  }
  if (runs_stage(shape, ranks, shape.num_stages() - 1) && !target.defined()) { // forward-only: no loss
    batch.targets.assign(static_cast<std::size_t>(M), torch::Tensor());
  } else if (runs_stage(shape, ranks, shape.num_stages() - 1)) {
    for (auto& t : split_tensors({device ? target.to(*device) : target}, M))
      batch.targets.push_back(t[0]);
    for (int m = 0; m < M; ++m)
      batch.scales[static_cast<std::size_t>(m)] =
          static_cast<double>(batch.targets[static_cast<std::size_t>(m)].size(0)) / static_cast<double>(target.size(0));
  }
  return batch;
}

} // namespace pippy
