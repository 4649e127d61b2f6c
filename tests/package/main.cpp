// Uses the installed pippy::runtime (micro-batches on libtorch) and, through it, pippy::core (a
// schedule); prints one line that package_test.sh checks, and fails itself when a number is wrong.
#include <pippy/core/generators.hpp>
#include <pippy/runtime/microbatch.hpp>

#include <iostream>

int main() {
  // 10 rows in 4 micro-batches: tensor_split sizes 3, 3, 2, 2; the last holds rows 8 and 9.
  const auto parts = pippy::split_tensors({torch::arange(10).reshape({10, 1})}, 4);
  std::cout << "microbatches";
  for (const auto& mb : parts) std::cout << ' ' << mb.at(0).size(0);
  const int64_t last_first_row = parts.at(3).at(0)[0][0].item<int64_t>();
  std::cout << " last " << last_first_row;

  // 1F1B on 2 ranks, 4 micro-batches: per rank 4 F, 4 B and one optimizer step.
  const auto sched = pippy::make_schedule({.name = "1f1b", .num_ranks = 2, .num_microbatches = 4});
  const auto with_comm = pippy::add_communication(sched);
  std::cout << "; schedule " << sched.name << " ranks " << sched.ranks.size() << " actions "
            << sched.num_actions() << " with communication " << with_comm.num_actions() << '\n';

  const bool ok = parts.size() == 4 && parts[0][0].size(0) == 3 && parts[1][0].size(0) == 3 &&
                  parts[2][0].size(0) == 2 && parts[3][0].size(0) == 2 && last_first_row == 8 &&
                  sched.ranks.size() == 2 && sched.num_actions() == 18 && with_comm.num_actions() == 34;
  if (!ok) std::cerr << "error: unexpected micro-batches or schedule\n";
  return ok ? 0 : 1;
}
