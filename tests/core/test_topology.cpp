#include <catch2/catch.hpp>

#include "pippy/core/error.hpp"
#include "pippy/core/topology.hpp"

using namespace pippy;

// The name avoids "split": the mutation check leaves out tests matching it (`pippy split` needs torch).
TEST_CASE("chunk sizes follow torch: as even as possible, the first chunks one row larger") {
  // torch.tensor_split's rule: rows / chunks each, and one more for the first rows % chunks.
  CHECK(chunk_sizes(10, 3) == std::vector<std::int64_t>{4, 3, 3});
  CHECK(chunk_sizes(11, 4) == std::vector<std::int64_t>{3, 3, 3, 2});
  CHECK(chunk_sizes(3, 3) == std::vector<std::int64_t>{1, 1, 1}); // as many rows as chunks: one each
  CHECK(chunk_sizes(5, 1) == std::vector<std::int64_t>{5});
  CHECK_THROWS_WITH(chunk_sizes(2, 3), "cannot split 2 rows into 3 micro-batches");
  CHECK_THROWS_WITH(chunk_sizes(4, 0), "chunks must be at least 1, got 0");
}
