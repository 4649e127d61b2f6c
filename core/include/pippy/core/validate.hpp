#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pippy/core/schedule.hpp"

namespace pippy {

// The first thing wrong with a schedule: where it is and why.
struct violation {
  int rank = -1;     // -1 when the problem is not at one position (e.g. an action never scheduled)
  int position = -1; // index in the rank's list
  std::optional<action> at;
  std::string why;
  std::string message() const;
};

// Checks ranges and placement, that each micro-batch is forwarded and backwarded exactly once per
// stage (B, or I then W), that U follows all backward work of its stage, that every data dependency
// exists, that sends match receives in order, and that the ranks cannot deadlock. Communication
// semantics are PyTorch's runtime: a send is posted without waiting (isend), a receive blocks until
// its matching send has been posted. A schedule without communication actions is checked as a
// compute-only schedule (cross-rank dependencies implicit); one with them must be fully lowered.
std::optional<violation> find_violation(const schedule& s);
// Throws input_error with the violation's message.
void validate(const schedule& s);

struct timed_action {
  action act;
  double start = 0;
  double end = 0;
};

// Start and end of every action when each rank runs its list in order, each action starts once its
// inputs are there, communication is free and instant. The reference for the simulator's numbers.
struct evaluation {
  std::vector<std::vector<timed_action>> ranks;
  double makespan = 0; // bubbles and busy time: traces' compute_metrics(trace_from_evaluation(...))
};

using compute_cost = std::function<double(const action&)>;
// Throws input_error when the schedule is invalid.
evaluation evaluate(const schedule& s, const compute_cost& cost);

// Unit costs: F = I = W = 1, B = I + W = 2, U = 0 unless given.
struct unit_costs {
  double forward = 1, backward_input = 1, backward_weight = 1, optimizer_step = 0;
  double operator()(const action& a) const;
};

// Peak number of micro-batches whose activations a rank holds (forwarded, backward not finished),
// counted over all its local stages.
std::vector<int> peak_in_flight(const schedule& s);

} // namespace pippy
