#include "pippy/core/processor.hpp"

#include <algorithm>
#include <limits>

namespace pippy {

shared_processor::shared_processor(int members, double arrival_cost_us)
    : arrival_cost_(arrival_cost_us), running_(static_cast<std::size_t>(std::max(1, members)), 0),
      end_(running_.size(), 0.0), charges_(running_.size(), 0), pending_(running_.size()) {}

void shared_processor::arrive(int member, double t) {
  auto& p = pending_[static_cast<std::size_t>(member)];
  p.insert(std::upper_bound(p.begin(), p.end(), t), t);
  dirty_ = dirty_ || running_[static_cast<std::size_t>(member)] != 0;
}

double shared_processor::begin(int member, double start, double cost) {
  drop_arrivals_until(member, start); // arrived before it started: between actions
  const job j{.start = start, .cost = cost, .order = next_order_++, .member = member};
  auto before = [](const job& a, const job& b) {
    return a.start != b.start ? a.start < b.start : a.member != b.member ? a.member < b.member : a.order < b.order;
  };
  jobs_.insert(std::upper_bound(jobs_.begin(), jobs_.end(), j, before), j);
  running_[static_cast<std::size_t>(member)] = 1;
  drop_before_running();
  dirty_ = true;
  return end(member);
}

double shared_processor::end(int member) {
  if (dirty_)
    settle();
  return end_[static_cast<std::size_t>(member)];
}

void shared_processor::finish(int member) {
  const auto m = static_cast<std::size_t>(member);
  if (dirty_)
    settle();
  for (auto& j : jobs_)
    if (!j.finished && j.member == member) {
      j.finished = true;
      j.charges = charges_[m]; // fixed from now on
    }
  running_[m] = 0;
  drop_arrivals_until(member, end_[m]);
  drop_before_running();
}

void shared_processor::drop_arrivals_until(int member, double t) {
  auto& p = pending_[static_cast<std::size_t>(member)];
  p.erase(p.begin(), std::upper_bound(p.begin(), p.end(), t));
}

// What started before the earliest running action cannot move a running end (newest first).
void shared_processor::drop_before_running() {
  jobs_.erase(jobs_.begin(), std::find_if(jobs_.begin(), jobs_.end(), [](const job& x) { return !x.finished; }));
}

// Runs the processor from the earliest running action's start: the newest action on top of a stack,
// each running one charged for the arrivals on its member while it is on the stack. At one time,
// ends come before arrivals, and arrivals before starts. That decides which actions nest in which and
// which arrivals count; a running action's end is then its start plus its own time and the time of each
// action that started inside it, summed in start order.
void shared_processor::settle() {
  constexpr double inf = std::numeric_limits<double>::infinity();
  dirty_ = false;
  const std::size_t n = jobs_.size();
  if (running_.size() == 1 && n == 1) { // a rank alone (the planner's case): its arrivals while it runs
    const job& x = jobs_.front();
    const auto& p = pending_.front(); // an engine may learn of an arrival before the start after the start
    int k = 0;
    for (auto it = std::upper_bound(p.begin(), p.end(), x.start); it != p.end() && *it < x.start + total(x.cost, k); ++it)
      ++k;
    end_.front() = x.start + total(x.cost, k);
    charges_.front() = k;
    return;
  }
  left_.resize(n);
  count_.resize(n);
  popped_at_.assign(n, n);
  for (std::size_t i = 0; i < n; ++i) {
    count_[i] = jobs_[i].finished ? jobs_[i].charges : 0;
    left_[i] = total(jobs_[i].cost, count_[i]);
  }
  stack_.clear();
  auto& next_arrival = next_arrival_; // per running member: the next of its arrivals to look at
  next_arrival.assign(pending_.size(), 0);
  double t = n ? jobs_[0].start : 0.0;
  std::size_t i = 0;
  while (i < n || !stack_.empty()) {
    const double next_start = i < n ? jobs_[i].start : inf;
    if (stack_.empty()) {
      t = next_start;
      stack_.push_back(i++);
      continue;
    }
    const std::size_t top = stack_.back();
    const double done_at = t + left_[top];
    double arrival = inf;
    std::size_t charged = 0;
    for (const std::size_t k : stack_) { // the earliest arrival on a running action's member
      const job& x = jobs_[k];
      if (x.finished)
        continue;
      const auto m = static_cast<std::size_t>(x.member);
      if (next_arrival[m] < pending_[m].size() && pending_[m][next_arrival[m]] < arrival)
        arrival = pending_[m][next_arrival[m]], charged = k;
    }
    if (done_at <= arrival && done_at <= next_start) {
      t = done_at;
      stack_.pop_back();
      popped_at_[top] = i;
    } else if (arrival <= next_start) {
      left_[top] -= arrival - t;
      t = arrival;
      ++next_arrival[static_cast<std::size_t>(jobs_[charged].member)];
      if (arrival > jobs_[charged].start) { // strictly inside
        left_[charged] += arrival_cost_;
        ++count_[charged];
      }
    } else {
      left_[top] -= next_start - t;
      t = next_start;
      stack_.push_back(i++);
    }
  }
  for (std::size_t a = 0; a < n; ++a) {
    const job& x = jobs_[a];
    if (x.finished)
      continue;
    double taken = total(x.cost, count_[a]);
    for (std::size_t k = a + 1; k < popped_at_[a]; ++k)
      taken += total(jobs_[k].cost, count_[k]);
    end_[static_cast<std::size_t>(x.member)] = x.start + taken;
    charges_[static_cast<std::size_t>(x.member)] = count_[a];
  }
}

std::vector<double> work_alone(const std::vector<processor_span>& spans, double lead_us) {
  std::vector<std::size_t> order(spans.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  auto earlier = [&](std::size_t a, std::size_t b) { // the processor's nesting order
    const auto &x = spans[a], &y = spans[b];
    return x.start != y.start ? x.start < y.start : x.member < y.member;
  };
  std::stable_sort(order.begin(), order.end(), earlier);
  std::vector<double> out(spans.size(), 0.0);
  for (std::size_t k = 0; k < order.size(); ++k) {
    const processor_span& a = spans[order[k]];
    // The union of the jobs that started inside its job, merged in start order (every job starts
    // lead_us before its span, so the order is the spans').
    double taken = 0, covered = a.start - lead_us;
    for (std::size_t n = k + 1; n < order.size() && spans[order[n]].start - lead_us < a.end; ++n) {
      const processor_span& b = spans[order[n]];
      if (b.member == a.member)
        continue;
      const double from = std::max(b.start - lead_us, covered), to = std::min(b.end, a.end);
      if (to > from)
        taken += to - from, covered = to;
    }
    out[order[k]] = std::max(0.0, a.end - a.start - taken);
  }
  return out;
}

rank_processors::rank_processors(const cost_table& costs, int num_ranks) {
  if (costs.arrival_cost_us <= 0 && costs.shared_cpus.empty())
    return;
  const auto R = static_cast<std::size_t>(std::max(0, num_ranks));
  index_.assign(R, -1);
  member_.assign(R, 0);
  shared_.assign(R, 0);
  for (const auto& group : costs.shared_cpus) {
    for (std::size_t k = 0; k < group.size(); ++k) {
      const auto r = static_cast<std::size_t>(group[k]);
      index_[r] = static_cast<int>(processors_.size());
      member_[r] = static_cast<int>(k);
      shared_[r] = group.size() > 1;
    }
    processors_.emplace_back(static_cast<int>(group.size()), costs.arrival_cost_us);
  }
  for (std::size_t r = 0; r < R; ++r)
    if (index_[r] < 0) {
      index_[r] = static_cast<int>(processors_.size());
      processors_.emplace_back(1, costs.arrival_cost_us);
    }
}

} // namespace pippy
