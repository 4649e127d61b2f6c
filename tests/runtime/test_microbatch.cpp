#include <catch2/catch.hpp>

#include "pippy/core/error.hpp"
#include "pippy/runtime/microbatch.hpp"

using namespace pippy;

TEST_CASE("chunk sizes follow tensor_split", "[runtime][microbatch]") {
  CHECK(chunk_sizes(10, 3) == std::vector<int64_t>{4, 3, 3});
  CHECK(chunk_sizes(6, 3) == std::vector<int64_t>{2, 2, 2});
  CHECK_THROWS_AS(chunk_sizes(2, 3), input_error);
}

TEST_CASE("split and merge round-trip: replicated and non-tensor arguments pass through",
          "[runtime][microbatch]") {
  auto x = torch::arange(20, torch::kFloat32).reshape({10, 2});
  auto mask = torch::ones({3});
  std::vector<argument> args{x, mask, 0.5, int64_t{7}};
  auto mbs = split_arguments(args, 3, {chunk_spec{}, chunk_spec::replicate(), chunk_spec{}, chunk_spec{}});
  REQUIRE(mbs.size() == 3);
  CHECK(std::get<torch::Tensor>(mbs[0][0]).size(0) == 4);
  CHECK(std::get<torch::Tensor>(mbs[2][0]).size(0) == 3);
  CHECK(std::get<torch::Tensor>(mbs[1][1]).equal(mask));
  CHECK(std::get<double>(mbs[2][2]) == 0.5);
  CHECK(std::get<int64_t>(mbs[1][3]) == 7);
  std::vector<std::vector<torch::Tensor>> outs;
  for (auto& mb : mbs)
    outs.push_back({std::get<torch::Tensor>(mb[0]) * 2});
  CHECK(merge_outputs(outs)[0].equal(x * 2));
}

TEST_CASE("split along another dimension, and mismatched rows are rejected", "[runtime][microbatch]") {
  auto x = torch::arange(12, torch::kFloat32).reshape({2, 6});
  auto mbs = split_tensors({x}, 3, {chunk_spec{.split_dim = 1}});
  CHECK(mbs[1][0].equal(x.narrow(1, 2, 2)));
  CHECK(merge_outputs({mbs[0], mbs[1], mbs[2]}, 1)[0].equal(x));
  CHECK_THROWS_AS(split_tensors({torch::ones({4, 1}), torch::ones({5, 1})}, 2), input_error);
}
