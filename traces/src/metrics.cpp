#include "pippy/traces/metrics.hpp"

#include "pippy/core/error.hpp"

#include "pippy/core/cost_table.hpp"
#include "pippy/core/dependencies.hpp"
#include "pippy/core/processor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <numeric>
#include <sstream>
#include <unordered_map>

namespace pippy {
namespace {

// Kind, stage and the micro-batch modulo 2^24 (U's "none", -1, is 2^24 - 1).
std::uint64_t act_key(action_kind k, int stage, int mb) {
  return (static_cast<std::uint64_t>(k) << 56) | (static_cast<std::uint64_t>(static_cast<std::uint32_t>(stage)) << 24) |
         static_cast<std::uint64_t>(static_cast<std::uint32_t>(mb) & 0xffffffu);
}

// Where each compute action of a trace sits, for the dependency rules: per replica (trace::replicas),
// whose actions repeat those of the others.
struct action_index {
  std::unordered_map<std::uint64_t, std::size_t> by_action;
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> backward_of_stage; // B and W per (replica, stage), for U
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> receives; // RECV events, every step's
  int replica_ranks = 0; // ranks of one replica (0: the trace is one)
  action_index() = default;
  explicit action_index(const trace& t) {
    replica_ranks = t.replica_ranks();
    by_action.reserve(t.events.size());
    for (std::size_t i = 0; i < t.events.size(); ++i) {
      const auto& a = t.events[i].act;
      const int d = replica_of(t.events[i].rank);
      if (is_receive(a.kind))
        receives[key(a.kind, a.stage, a.microbatch, d)].push_back(i);
      if (!is_compute(a.kind))
        continue;
      by_action.emplace(key(a.kind, a.stage, a.microbatch, d), i);
      if (a.kind == action_kind::full_backward || a.kind == action_kind::backward_weight)
        backward_of_stage[in_replica(a.stage, d)].push_back(i);
    }
  }
  int replica_of(int rank) const { return replica_ranks > 0 ? rank / replica_ranks : 0; }
  static std::uint64_t in_replica(int stage, int replica) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(replica)) << 32) | static_cast<std::uint32_t>(stage);
  }
  // Stages are below 2^20 (limits::max_stages), act_key's bits 24..43; the replica (below
  // limits::max_trace_replicas, 2^12) goes in bits 44..55, under the kind.
  static std::uint64_t key(action_kind k, int stage, int mb, int replica) {
    return act_key(k, stage, mb) | (static_cast<std::uint64_t>(static_cast<std::uint32_t>(replica) & 0xfffu) << 44);
  }
  std::optional<std::size_t> find(action_kind k, int stage, int mb, int replica) const {
    auto it = by_action.find(key(k, stage, mb, replica));
    if (it == by_action.end())
      return std::nullopt;
    return it->second;
  }
  // Producers in the trace of event i's inputs (core's rule, compute-only: transfers are implicit).
  std::vector<std::size_t> deps(const trace& t, std::size_t i) const {
    std::vector<std::size_t> out;
    const action& a = t.events[i].act;
    if (!is_compute(a.kind))
      return out;
    const int replica = replica_of(t.events[i].rank);
    for (const dependency& d : inputs_of(a, std::numeric_limits<int>::max())) {
      if (d.role == input_role::stage_backward) {
        if (auto it = backward_of_stage.find(in_replica(d.stage, replica)); it != backward_of_stage.end())
          out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
      for (int k = 0; k < d.num_kinds; ++k)
        if (auto j = find(d.kinds[static_cast<std::size_t>(k)], d.stage, d.microbatch, replica))
          out.push_back(*j);
    }
    return out;
  }
  // Event i's input from a neighbour stage on another rank, when its transfer was still in flight at
  // `from`: the producer, found because i's rank has a RECV of it that completed after `from` and by i's
  // start (a measured trace: the transport's completion; the simulator writes no RECV).
  std::optional<std::size_t> in_flight_input(const trace& t, std::size_t i, double from) const {
    const trace_event& e = t.events[i];
    for (const dependency& d : inputs_of(e.act, std::numeric_limits<int>::max())) {
      if (!d.from_neighbour())
        continue;
      const auto recv = d.forward_data() ? action_kind::recv_f : action_kind::recv_b;
      const int replica = replica_of(e.rank);
      const auto it = receives.find(key(recv, e.act.stage, e.act.microbatch, replica));
      if (it == receives.end() ||
          std::none_of(it->second.begin(), it->second.end(), [&](std::size_t k) {
            const trace_event& r = t.events[k];
            return r.rank == e.rank && r.end_us > from && r.end_us <= e.start_us;
          }))
        continue;
      for (int k = 0; k < d.num_kinds; ++k)
        if (auto j = find(d.kinds[static_cast<std::size_t>(k)], d.stage, d.microbatch, replica); j && t.events[*j].rank != e.rank)
          return j;
    }
    return std::nullopt;
  }
};

// The union of [start, end) intervals as disjoint spans: f(start, end) for each, in time order. Sorts iv.
template <class F>
void for_each_union_span(std::vector<std::pair<double, double>>& iv, F&& f) {
  std::sort(iv.begin(), iv.end());
  double cur_s = 0, cur_e = 0;
  bool open = false;
  for (auto [s, e] : iv) {
    if (!open || s > cur_e) {
      if (open)
        f(cur_s, cur_e);
      cur_s = s;
      cur_e = e;
      open = true;
    } else {
      cur_e = std::max(cur_e, e);
    }
  }
  if (open)
    f(cur_s, cur_e);
}

// Total length of the union of [start, end) intervals (sorts iv).
double union_length(std::vector<std::pair<double, double>>& iv) {
  double total = 0;
  for_each_union_span(iv, [&](double s, double e) { total += e - s; });
  return total;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

} // namespace

trace trace_from_evaluation(const evaluation& ev, const std::string& run, double us_per_unit, event_source source) {
  trace t;
  t.run = run;
  t.num_ranks = static_cast<int>(ev.ranks.size());
  for (int r = 0; r < t.num_ranks; ++r)
    for (const auto& ta : ev.ranks[static_cast<std::size_t>(r)])
      t.events.push_back(trace_event{.rank = r, .act = ta.act, .start_us = ta.start * us_per_unit,
                                     .end_us = ta.end * us_per_unit, .bytes = 0, .peer = -1, .source = source});
  return t;
}

std::string_view to_string(idle_cause c) {
  switch (c) {
  case idle_cause::activation: return "activation";
  case idle_cause::gradient: return "gradient";
  case idle_cause::local: return "local";
  case idle_cause::ordering: return "ordering";
  case idle_cause::drain: return "drain";
  }
  return "?";
}

std::string idle_gap::describe() const {
  std::string out = "rank " + std::to_string(rank) + " idle " + fmt("%.3f", start_us) + ".." + fmt("%.3f", end_us) +
                    " us (" + fmt("%.3f", duration_us()) + "): ";
  switch (cause) {
  case idle_cause::activation:
    out += "waiting for the activation of stage " + std::to_string(waited_for->stage) + " micro-batch " +
           std::to_string(waited_for->microbatch);
    break;
  case idle_cause::gradient:
    out += "waiting for the gradient of stage " + std::to_string(waited_for->stage) + " micro-batch " +
           std::to_string(waited_for->microbatch);
    break;
  case idle_cause::local: out += "waiting for " + to_string(*waited_for); break;
  case idle_cause::ordering: out += "inputs ready, held by the rank's order"; break;
  case idle_cause::drain: out += "drain: no more work this step"; break;
  }
  if (waited_for && waited_rank >= 0)
    out += " (" + to_string(*waited_for) + " on rank " + std::to_string(waited_rank) + ")";
  if (next)
    out += ", then " + to_string(*next);
  return out;
}

std::vector<std::size_t> data_dependencies(const trace& t, std::size_t i) { return action_index(t).deps(t, i); }

trace work_alone(const trace& t, const std::vector<std::vector<int>>& shared_cpus, double overhead_us) {
  trace out = t;
  for (const auto& group : shared_cpus) {
    std::vector<std::size_t> which;
    std::vector<processor_span> spans;
    for (std::size_t i = 0; i < out.events.size(); ++i) {
      const trace_event& e = out.events[i];
      const auto member = std::find(group.begin(), group.end(), e.rank);
      if (member != group.end() && is_compute(e.act.kind)) {
        which.push_back(i);
        spans.push_back({.start = e.start_us, .end = e.end_us, .member = static_cast<int>(member - group.begin())});
      }
    }
    const std::vector<double> work = pippy::work_alone(spans, overhead_us);
    for (std::size_t k = 0; k < which.size(); ++k)
      out.events[which[k]].end_us = out.events[which[k]].start_us + work[k];
  }
  return out;
}

trace merge_ranks(const std::vector<trace>& parts, const std::vector<std::string>& names) {
  trace out;
  std::map<int, std::size_t> owner; // rank -> the part that holds it
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const trace& t = parts[i];
    std::set<int> ranks;
    for (const auto& e : t.events)
      ranks.insert(e.rank);
    for (const int r : ranks)
      if (const auto [it, fresh] = owner.emplace(r, i); !fresh)
        throw input_error("trace merge: rank " + std::to_string(r) + " is in both " + names.at(it->second) + " and " +
                          names.at(i) + " (merge the files of different ranks)");
    out.num_ranks = std::max(out.num_ranks, t.num_ranks);
    out.events.insert(out.events.end(), t.events.begin(), t.events.end());
    out.memory.insert(out.memory.end(), t.memory.begin(), t.memory.end());
    out.markers.insert(out.markers.end(), t.markers.begin(), t.markers.end());
    if (out.run.empty())
      out.run = t.run;
  }
  if (parts.size() > 1)
    out.run = "merged from " + std::to_string(parts.size()) + " files (" + out.run + ", ...)";
  return out;
}

trace step_range(const trace& t, int steps, int first, int count) {
  trace out = t;
  out.events.clear();
  if (steps < 1)
    return out;
  std::map<int, std::vector<trace_event>> by_rank;
  for (const auto& e : t.events)
    by_rank[e.rank].push_back(e);
  for (auto& [r, evs] : by_rank) {
    std::stable_sort(evs.begin(), evs.end(),
                     [](const trace_event& a, const trace_event& b) { return a.start_us < b.start_us; });
    const std::size_t per_step = evs.size() / static_cast<std::size_t>(steps);
    const std::size_t from = std::min(evs.size(), per_step * static_cast<std::size_t>(std::max(0, first)));
    const std::size_t to = count < 0 ? evs.size()
                                     : std::min(evs.size(), from + per_step * static_cast<std::size_t>(count));
    out.events.insert(out.events.end(), evs.begin() + static_cast<std::ptrdiff_t>(from),
                      evs.begin() + static_cast<std::ptrdiff_t>(to));
  }
  // Memory samples of each rank from its first kept event on.
  std::map<int, double> from;
  for (const auto& e : out.events)
    from[e.rank] = from.count(e.rank) ? std::min(from[e.rank], e.start_us) : e.start_us;
  out.memory.clear();
  for (const auto& m : t.memory)
    if (from.count(m.rank) && m.t_us >= from[m.rank])
      out.memory.push_back(m);
  return out;
}

namespace {
// A trace's compute actions as (rank, action) -> how often it holds each.
std::map<std::pair<int, action>, int> compute_action_counts(const trace& t) {
  std::map<std::pair<int, action>, int> count;
  for (const auto& e : t.events)
    if (is_compute(e.act.kind))
      ++count[{e.rank, e.act}];
  return count;
}
} // namespace

int steps_in(const trace& t) {
  int k = 0;
  for (const auto& [key, n] : compute_action_counts(t)) {
    if (k != 0 && n != k)
      return 1;
    k = n;
  }
  return std::max(k, 1);
}

std::string format_steps(const trace& t) {
  const int k = steps_in(t);
  if (k < 2)
    return {};
  std::ostringstream o;
  o << "steps: " << k << " (the whole trace's numbers below count the time between steps too)\n";
  o << "step      time_us    bubble\n";
  std::vector<double> times;
  for (int s = 0; s < k; ++s) {
    const auto m = compute_metrics(step_range(t, k, s, 1), metrics_depth::summary);
    times.push_back(m.step_time_us);
    char line[96];
    std::snprintf(line, sizeof line, "%4d  %11.3f  %.4f\n", s, m.step_time_us, m.bubble_fraction);
    o << line;
  }
  double sum = 0;
  for (double x : times)
    sum += x;
  o << "step time: mean " << fmt("%.3f", sum / k) << " us, min " << fmt("%.3f", *std::min_element(times.begin(), times.end()))
    << " us, max " << fmt("%.3f", *std::max_element(times.begin(), times.end())) << " us\n";
  return o.str();
}

double median_of(std::vector<double> values) {
  if (values.empty())
    return 0.0;
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

namespace {
// Each rank's compute events in start order (transfers may be posted before their step begins), which
// cut into `steps` equal parts give the rank's steps.
std::map<int, std::vector<const trace_event*>> compute_events_by_rank(const trace& t) {
  std::map<int, std::vector<const trace_event*>> by_rank;
  for (const auto& e : t.events)
    if (is_compute(e.act.kind))
      by_rank[e.rank].push_back(&e);
  for (auto& [r, evs] : by_rank)
    std::stable_sort(evs.begin(), evs.end(), [](const trace_event* a, const trace_event* b) { return a->start_us < b->start_us; });
  return by_rank;
}
} // namespace

step_bounds bounds_of_steps(const trace& t, int steps) {
  step_bounds out;
  if (steps < 1)
    return out;
  constexpr double inf = std::numeric_limits<double>::infinity();
  out.first_start_us.assign(static_cast<std::size_t>(steps), inf);
  out.last_end_us.assign(static_cast<std::size_t>(steps), -inf);
  for (const auto& [r, evs] : compute_events_by_rank(t)) {
    const std::size_t per_step = evs.size() / static_cast<std::size_t>(steps);
    for (std::size_t i = 0; i < per_step * static_cast<std::size_t>(steps); ++i) {
      const auto k = i / per_step;
      out.first_start_us[k] = std::min(out.first_start_us[k], evs[i]->start_us);
      out.last_end_us[k] = std::max(out.last_end_us[k], evs[i]->end_us);
    }
  }
  return out;
}

double step_gap_us(const trace& t, int steps) {
  const auto b = bounds_of_steps(t, steps);
  double sum = 0;
  int n = 0;
  for (std::size_t k = 1; k < b.first_start_us.size(); ++k)
    if (std::isfinite(b.first_start_us[k]) && std::isfinite(b.last_end_us[k - 1]))
      sum += b.first_start_us[k] - b.last_end_us[k - 1], ++n;
  return n ? sum / n : 0.0;
}

double rank_step_gap_us(const trace& t, int steps) {
  if (steps < 2)
    return 0.0;
  double sum = 0;
  int n = 0;
  for (const auto& [r, evs] : compute_events_by_rank(t)) {
    const std::size_t per_step = evs.size() / static_cast<std::size_t>(steps);
    for (std::size_t k = 1; per_step > 0 && k < static_cast<std::size_t>(steps); ++k) {
      const trace_event& first = *evs[k * per_step];
      if (first.act.kind == action_kind::forward && first.act.stage == 0)
        sum += first.start_us - evs[k * per_step - 1]->end_us, ++n;
    }
  }
  return n ? sum / n : 0.0;
}

double median_step_us(const trace& t, int steps) {
  const auto b = bounds_of_steps(t, steps);
  const double gap = step_gap_us(t, steps);
  std::vector<double> each;
  for (std::size_t k = 0; k < b.first_start_us.size(); ++k) {
    const double next = k + 1 < b.first_start_us.size() ? b.first_start_us[k + 1] : b.last_end_us[k] + gap;
    if (std::isfinite(b.first_start_us[k]) && std::isfinite(next))
      each.push_back(next - b.first_start_us[k]);
  }
  return median_of(std::move(each));
}

void shift_to_zero(trace& t) {
  double lo = std::numeric_limits<double>::max();
  for (const auto& e : t.events)
    lo = std::min(lo, e.start_us);
  for (auto& e : t.events) {
    e.start_us -= lo;
    e.end_us -= lo;
  }
  for (auto& m : t.memory)
    m.t_us = std::max(0.0, m.t_us - lo);
}

namespace {
// Per rank, time spans sorted by start and merged into a disjoint union.
using spans_by_rank = std::vector<std::vector<std::pair<double, double>>>;

void add_span(spans_by_rank& out, int rank, double start_us, double end_us) {
  if (rank < 0)
    return;
  if (static_cast<std::size_t>(rank) >= out.size())
    out.resize(static_cast<std::size_t>(rank) + 1);
  out[static_cast<std::size_t>(rank)].push_back({start_us, end_us});
}

spans_by_rank merged(spans_by_rank by_rank) {
  for (auto& r : by_rank) {
    std::vector<std::pair<double, double>> out;
    for_each_union_span(r, [&](double s, double e) { out.push_back({s, e}); });
    r = std::move(out);
  }
  return by_rank;
}

// How much of [from, to] a rank's spans cover: those starting before `to`, back to the first that ends
// by `from` (they are disjoint).
double covered_us(const spans_by_rank& by_rank, int rank, double from, double to) {
  if (rank < 0 || static_cast<std::size_t>(rank) >= by_rank.size())
    return 0;
  const auto& v = by_rank[static_cast<std::size_t>(rank)];
  double covered = 0;
  for (auto it = std::lower_bound(v.begin(), v.end(), std::pair{to, -std::numeric_limits<double>::infinity()});
       it != v.begin();) {
    --it;
    if (it->second <= from)
      break;
    covered += std::min(it->second, to) - std::max(it->first, from);
  }
  return covered;
}

// Each rank's SEND events: what the rank spent posting sends.
spans_by_rank postings_by_rank(const trace& t) {
  spans_by_rank out;
  for (const auto& e : t.events)
    if (is_send(e.act.kind))
      add_span(out, e.rank, e.start_us, e.end_us);
  return merged(std::move(out));
}

// Per rank, when other ranks on its CPU (shared_cpus) computed.
spans_by_rank co_members_compute(const trace& t, const std::vector<std::vector<int>>& shared_cpus) {
  spans_by_rank out;
  for (const auto& e : t.events)
    for (const auto& group : shared_cpus)
      if (is_compute(e.act.kind) && std::find(group.begin(), group.end(), e.rank) != group.end())
        for (const int other : group)
          if (other != e.rank)
            add_span(out, other, e.start_us, e.end_us);
  return merged(std::move(out));
}

// Adds the gaps between two compute actions of a rank whose inputs had all ended before the gap began
// (not the wait before a rank's first action: that is the step's start), each less the rank's postings
// within it. Not the gap before a U: its step gate may wait there for collectives (the replicas'
// all-reduce, which a trace of pp x dp holds as REDUCE_GRAD; the tied copies' sum, which none holds).
// Less the time another rank on the rank's CPU computed within it (`contended`): the processor rule
// counts that apart (on a shared CPU the overhead is the CPU's work, and a job that starts inside it
// runs first). Skipping those gaps instead kept the quiet ones: on MyNetwork's 3 processes the busiest
// rank, sharing core 0, waited 80-115 us after an F or an I where 25 were taken, and every schedule was
// predicted 0.3-7.6% under (within 3.1% from the same runs with them).
void add_overhead_gaps(const trace_metrics& m, const spans_by_rank& postings, const spans_by_rank& contended, double& sum,
                       std::size_t& n) {
  for (const auto& g : m.gaps) {
    if (g.cause != idle_cause::ordering || !g.next || g.next->kind == action_kind::optimizer_step || g.start_us <= m.start_us)
      continue;
    const double posting = covered_us(postings, g.rank, g.start_us, g.end_us);
    const double others = covered_us(contended, g.rank, g.start_us, g.end_us);
    sum += std::max(0.0, g.duration_us() - posting - others), ++n;
  }
}
} // namespace

double action_overhead_us(const trace& t) { return action_overhead_us(std::vector<trace_metrics>{compute_metrics(t)}, t); }

std::vector<trace_metrics> step_metrics(const trace& t, int steps) {
  std::vector<trace_metrics> out;
  for (int k = 0; k < std::max(1, steps); ++k)
    out.push_back(compute_metrics(steps > 1 ? step_range(t, steps, k, 1) : t));
  return out;
}

double action_overhead_us(const std::vector<trace_metrics>& per_step, const trace& t,
                          const std::vector<std::vector<int>>& shared_cpus) {
  const auto postings = postings_by_rank(t);
  double sum = 0;
  std::size_t n = 0;
  const auto contended = co_members_compute(t, shared_cpus);
  for (const auto& m : per_step)
    add_overhead_gaps(m, postings, contended, sum, n);
  return n ? sum / static_cast<double>(n) : 0.0;
}

double action_overhead_us(const trace& t, int steps) { return action_overhead_us(step_metrics(t, steps), t); }

std::vector<transfer_wait> transfer_waits(const std::vector<trace_metrics>& per_step) {
  std::vector<transfer_wait> out;
  const trace_metrics* before = nullptr;
  for (const auto& m : per_step) {
    // The wait before a rank's first action of the step counts when the rank had ended the step before by
    // the time the producer ended: then it idled for the transfer alone.
    const auto idle_since_step_before = [&](const idle_gap& g) {
      const auto r = static_cast<std::size_t>(g.rank); // compute_metrics' ranks are indexed by rank
      return before != nullptr && r < before->ranks.size() && before->ranks[r].num_actions > 0 &&
             before->ranks[r].last_end_us <= g.waited_end_us;
    };
    for (const auto& g : m.gaps)
      if ((g.cause == idle_cause::activation || g.cause == idle_cause::gradient) && g.waited_rank != g.rank &&
          g.waited_for && g.waited_end_us > g.start_us && (g.start_us > m.start_us || idle_since_step_before(g)))
        out.push_back({.src = g.waited_rank, .dst = g.rank, .producer = *g.waited_for, .wait_us = g.end_us - g.waited_end_us});
    before = &m;
  }
  return out;
}

std::vector<transfer_wait> transfer_waits(const trace& t, int steps) { return transfer_waits(step_metrics(t, steps)); }

std::vector<double> fit_step_noise(const trace& t, int steps, int quantiles) {
  if (steps < 3 || quantiles < 1)
    return {};
  std::map<std::pair<int, action>, std::vector<double>> times; // each compute action's time, step by step
  for (const auto& e : t.events)
    if (is_compute(e.act.kind))
      times[{e.rank, e.act}].push_back(e.duration_us());
  std::vector<double> factors;
  for (const auto& [key, d] : times) {
    const double n = static_cast<double>(d.size());
    const double mean = std::accumulate(d.begin(), d.end(), 0.0) / n;
    if (d.size() < 2 || !(mean > 0))
      continue;
    const double widen = std::sqrt(n / (n - 1)); // the mean came from the same times: undo its pull
    for (double x : d)
      factors.push_back(std::max(0.0, 1.0 + (x / mean - 1.0) * widen));
  }
  if (factors.empty())
    return {};
  std::sort(factors.begin(), factors.end());
  std::vector<double> out;
  for (int i = 0; i < quantiles; ++i) // what a draw reads back at the same probabilities
    out.push_back(quantile_at(factors, (i + 0.5) / quantiles));
  // A draw's mean is the quantiles' mean (cost_table::operator() interpolates between them). The tail
  // beyond the last quantile is cut, which would make noisy actions shorter on average: scale to a mean
  // of 1, so that the stage times stay the measured means.
  const double mean = std::accumulate(out.begin(), out.end(), 0.0) / static_cast<double>(out.size());
  if (mean > 0)
    for (double& q : out)
      q /= mean;
  return out;
}

arrival_fit fit_arrival_cost(const trace& t, int num_stages) {
  arrival_fit fit;
  fit.mean_arrivals.assign(static_cast<std::size_t>(std::max(0, num_stages)), {});
  int num_ranks = t.num_ranks;
  for (const auto& e : t.events)
    num_ranks = std::max(num_ranks, e.rank + 1);
  std::vector<std::vector<double>> arrivals(static_cast<std::size_t>(num_ranks));
  for (const auto& e : t.events)
    if (is_receive(e.act.kind))
      arrivals[static_cast<std::size_t>(e.rank)].push_back(e.end_us);
  for (auto& a : arrivals)
    std::sort(a.begin(), a.end());
  std::vector<std::array<std::vector<const trace_event*>, 5>> groups(fit.mean_arrivals.size());
  for (const auto& e : t.events)
    if (is_compute(e.act.kind) && e.act.stage >= 0 && e.act.stage < num_stages)
      groups[static_cast<std::size_t>(e.act.stage)][static_cast<std::size_t>(e.act.kind)].push_back(&e);
  // Within each (stage, kind), summed over them: the sums of squares and products of the arrivals (n) and
  // the durations (d) about their means.
  double nn = 0, nd = 0, dd = 0, samples = 0;
  std::vector<double> counts;
  for (std::size_t s = 0; s < groups.size(); ++s)
    for (std::size_t k = 0; k < 5; ++k) {
      const auto& group = groups[s][k];
      if (group.empty())
        continue;
      std::vector<double> d;
      for (const auto* e : group)
        d.push_back(e->duration_us());
      std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
      const double median = d[d.size() / 2];
      // Counted over the action's time up to the kind's median: an action slow for another reason would
      // otherwise catch more arrivals for being slow, and its time would be put down to them. Not over the
      // median for a fast one: what arrives after its end cost it nothing (over the median alone, three
      // runs' predictions came out further off: 2.9% from the measured step on average, against 2.5%).
      counts.clear();
      double mean_n = 0, mean_d = 0;
      for (const auto* e : group) {
        const auto& at = arrivals[static_cast<std::size_t>(e->rank)];
        const double until = e->start_us + std::min(e->duration_us(), median);
        counts.push_back(static_cast<double>(std::lower_bound(at.begin(), at.end(), until) -
                                             std::upper_bound(at.begin(), at.end(), e->start_us)));
        mean_n += counts.back(), mean_d += e->duration_us();
      }
      mean_n /= static_cast<double>(group.size()), mean_d /= static_cast<double>(group.size());
      fit.mean_arrivals[s][k] = mean_n;
      for (std::size_t i = 0; i < group.size(); ++i) {
        const double x = counts[i] - mean_n, y = group[i]->duration_us() - mean_d;
        nn += x * x, nd += x * y, dd += y * y;
      }
      samples += static_cast<double>(group.size()) - 1; // each group's mean takes one
    }
  if (!(nn > 1e-9))
    return fit;
  const double cost = nd / nn;
  // Kept only where the trace tells it from noise: more than twice its standard error. The residuals'
  // sum of squares of a least-squares slope is dd - nd * nd / nn.
  const double free = samples - 1;
  const double residuals = std::max(0.0, dd - nd * cost);
  if (free > 0 && cost > 2 * std::sqrt(residuals / free / nn))
    fit.cost_us = cost;
  return fit;
}

std::vector<memory_sample> memory_curve(const trace& t, int rank) {
  std::vector<memory_sample> out;
  for (const auto& m : t.memory)
    if (m.rank == rank)
      out.push_back(m);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.t_us < b.t_us; });
  return out;
}

trace_metrics compute_metrics(const trace& t, metrics_depth depth) {
  trace_metrics m;
  m.num_events = t.events.size();
  int num_ranks = t.num_ranks;
  for (const auto& e : t.events)
    num_ranks = std::max(num_ranks, e.rank + 1);
  for (const auto& s : t.memory)
    num_ranks = std::max(num_ranks, s.rank + 1);
  m.ranks.resize(static_cast<std::size_t>(num_ranks));
  for (int r = 0; r < num_ranks; ++r)
    m.ranks[static_cast<std::size_t>(r)].rank = r;
  if (t.events.empty())
    return m;

  m.start_us = t.events.front().start_us;
  m.end_us = t.events.front().end_us;
  for (const auto& e : t.events) {
    m.start_us = std::min(m.start_us, e.start_us);
    m.end_us = std::max(m.end_us, e.end_us);
  }
  m.step_time_us = m.end_us - m.start_us;

  // Compute events of each rank in start order.
  std::vector<std::vector<std::size_t>> order(static_cast<std::size_t>(num_ranks));
  std::vector<std::vector<std::pair<double, double>>> comm(static_cast<std::size_t>(num_ranks));
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    const auto& e = t.events[i];
    if (is_compute(e.act.kind)) {
      order[static_cast<std::size_t>(e.rank)].push_back(i);
      ++m.num_compute;
      ++m.kind_count[static_cast<std::size_t>(e.act.kind)];
      m.kind_us[static_cast<std::size_t>(e.act.kind)] += e.duration_us();
    } else {
      comm[static_cast<std::size_t>(e.rank)].push_back({e.start_us, e.end_us});
      if (is_receive(e.act.kind))
        ++m.num_receives;
      else if (is_send(e.act.kind))
        ++m.num_sends;
      else
        ++m.num_reduce_grads;
    }
  }
  m.num_comm = std::max(m.num_sends, m.num_receives);
  std::vector<std::size_t> pos_in_rank(t.events.size(), 0);
  const action_index idx = depth == metrics_depth::full ? action_index(t) : action_index();
  double total_busy = 0, steady_span = 0, steady_idle = 0;
  for (int r = 0; r < num_ranks; ++r) {
    auto& ord = order[static_cast<std::size_t>(r)];
    std::stable_sort(ord.begin(), ord.end(), [&](std::size_t a, std::size_t b) {
      return t.events[a].start_us < t.events[b].start_us;
    });
    auto& rm = m.ranks[static_cast<std::size_t>(r)];
    rm.num_actions = ord.size();
    std::vector<std::pair<double, double>> iv;
    iv.reserve(ord.size());
    for (std::size_t k = 0; k < ord.size(); ++k) {
      const auto& e = t.events[ord[k]];
      pos_in_rank[ord[k]] = k;
      iv.push_back({e.start_us, e.end_us});
    }
    rm.busy_us = union_length(iv);
    rm.comm_us = union_length(comm[static_cast<std::size_t>(r)]);
    total_busy += rm.busy_us;
    {
      double first = std::numeric_limits<double>::infinity(), last = -first;
      for (const auto& [s, e] : iv)
        if (e > s)
          first = std::min(first, s), last = std::max(last, e);
      if (rm.busy_us > 0)
        steady_span += last - first, steady_idle += (last - first) - rm.busy_us;
    }
    if (m.step_time_us > 0) {
      rm.utilisation = rm.busy_us / m.step_time_us;
      rm.bubble_fraction = 1.0 - rm.utilisation;
    }
    if (ord.empty()) {
      if (m.step_time_us > 0)
        m.gaps.push_back({.rank = r, .start_us = m.start_us, .end_us = m.end_us, .cause = idle_cause::drain});
      continue;
    }
    rm.first_start_us = t.events[ord.front()].start_us;
    if (depth == metrics_depth::summary) {
      for (auto i : ord)
        rm.last_end_us = std::max(rm.last_end_us, t.events[i].end_us);
      continue;
    }
    // Gaps: before the first action (warm-up), between actions, after the last (drain).
    double cursor = m.start_us;
    for (std::size_t k = 0; k < ord.size(); ++k) {
      const std::size_t i = ord[k];
      const auto& e = t.events[i];
      if (e.start_us > cursor) {
        idle_gap g{.rank = r, .start_us = cursor, .end_us = e.start_us, .cause = idle_cause::ordering, .next = e.act};
        // The dependency that arrived last closed the gap if it ended inside it, or if its transfer did.
        std::optional<std::size_t> last;
        for (auto d : idx.deps(t, i))
          if (!last || t.events[d].end_us > t.events[*last].end_us)
            last = d;
        if (last && t.events[*last].end_us <= cursor) // every producer had ended: its transfer may not have
          last = idx.in_flight_input(t, i, cursor);
        if (last) {
          const auto& d = t.events[*last];
          g.waited_for = d.act;
          g.waited_rank = d.rank;
          g.waited_end_us = d.end_us;
          if (e.act.kind == action_kind::forward && d.act.stage == e.act.stage - 1)
            g.cause = idle_cause::activation;
          else if (is_input_backward(e.act.kind) && d.act.stage == e.act.stage + 1)
            g.cause = idle_cause::gradient;
          else
            g.cause = idle_cause::local;
        }
        m.gaps.push_back(g);
      }
      cursor = std::max(cursor, e.end_us);
    }
    rm.last_end_us = cursor;
    if (m.end_us > cursor)
      m.gaps.push_back({.rank = r, .start_us = cursor, .end_us = m.end_us, .cause = idle_cause::drain});
  }
  if (m.step_time_us > 0 && num_ranks > 0) {
    m.utilisation = total_busy / (m.step_time_us * num_ranks);
    m.bubble_fraction = 1.0 - m.utilisation;
  }
  if (steady_span > 0)
    m.steady_bubble_fraction = steady_idle / steady_span;
  for (const auto& s : t.memory) {
    auto& rm = m.ranks[static_cast<std::size_t>(s.rank)];
    rm.peak_memory = std::max(rm.peak_memory, s.bytes);
    m.peak_memory = std::max(m.peak_memory, s.bytes);
  }
  if (depth == metrics_depth::summary)
    return m;

  // Critical path: from the compute action that ends last, walk back to the predecessor (data
  // dependency or the previous action on the same rank) that finished last.
  std::optional<std::size_t> cur;
  for (std::size_t i = 0; i < t.events.size(); ++i)
    if (is_compute(t.events[i].act.kind) && (!cur || t.events[i].end_us > t.events[*cur].end_us))
      cur = i;
  std::vector<char> visited(t.events.size(), 0);
  while (cur && !visited[*cur]) {
    visited[*cur] = 1;
    m.critical_path.push_back(*cur);
    m.critical_path_busy_us += t.events[*cur].duration_us();
    const auto& e = t.events[*cur];
    std::optional<std::size_t> best;
    auto consider = [&](std::size_t j) {
      if (visited[j] || t.events[j].end_us > e.start_us + 1e-9 * (1 + std::abs(e.start_us)))
        return;
      if (!best || t.events[j].end_us > t.events[*best].end_us)
        best = j;
    };
    for (auto d : idx.deps(t, *cur))
      consider(d);
    const auto& ord = order[static_cast<std::size_t>(e.rank)];
    if (const auto p = pos_in_rank[*cur]; p > 0)
      consider(ord[p - 1]);
    cur = best;
  }
  std::reverse(m.critical_path.begin(), m.critical_path.end());
  return m;
}

std::string why_not_comparable(const trace& predicted, const trace& measured) {
  if (predicted.num_ranks != measured.num_ranks)
    return "the traces have " + std::to_string(predicted.num_ranks) + " and " + std::to_string(measured.num_ranks) +
           " ranks";
  // Equal for one schedule's step.
  const auto p = compute_action_counts(predicted), m = compute_action_counts(measured);
  if (p == m)
    return {};
  std::size_t np = 0, nm = 0;
  for (const auto& [k, c] : p)
    np += static_cast<std::size_t>(c);
  for (const auto& [k, c] : m)
    nm += static_cast<std::size_t>(c);
  std::string why = "their compute actions differ (" + std::to_string(np) + " and " + std::to_string(nm) + ")";
  if (np > 0 && nm > np && nm % np == 0)
    why += ": the second looks like " + std::to_string(nm / np) +
           " steps; compare one step (a run's --step-trace file)";
  else
    why += ": another schedule, or another number of micro-batches or stages";
  return why;
}

action_matching match_actions(const trace& predicted, const trace& measured,
                              const std::function<bool(const trace_event&)>& compared) {
  action_matching out;
  std::map<std::pair<int, action>, std::size_t> meas; // the first measured event of each (rank, action)
  for (std::size_t j = 0; j < measured.events.size(); ++j)
    if (compared(measured.events[j]))
      meas.emplace(std::pair{measured.events[j].rank, measured.events[j].act}, j);
  for (std::size_t i = 0; i < predicted.events.size(); ++i) {
    const trace_event& e = predicted.events[i];
    if (!compared(e))
      continue;
    const auto it = meas.find({e.rank, e.act});
    if (it == meas.end()) {
      ++out.only_predicted;
      continue;
    }
    out.pairs.emplace_back(i, it->second);
    meas.erase(it);
  }
  out.only_measured = meas.size();
  return out;
}

trace_diff diff_traces(const trace& predicted, const trace& measured) {
  return diff_traces(predicted, measured, compute_metrics(predicted), compute_metrics(measured));
}

trace_diff diff_traces(const trace& predicted, const trace& measured, const trace_metrics& pm,
                       const trace_metrics& mm) {
  trace_diff d;
  d.predicted_step_us = pm.step_time_us;
  d.measured_step_us = mm.step_time_us;
  d.predicted_bubble = pm.bubble_fraction;
  d.measured_bubble = mm.bubble_fraction;
  // A receive is compared only where both traces record receives.
  const bool compare_receives = pm.num_receives > 0 && mm.num_receives > 0;
  d.receives_unpaired = compare_receives ? 0 : pm.num_receives + mm.num_receives;
  const auto match = match_actions(predicted, measured,
                                   [&](const trace_event& e) { return compare_receives || !is_receive(e.act.kind); });
  d.matched = match.pairs.size();
  d.only_predicted = match.only_predicted;
  d.only_measured = match.only_measured;
  const int R = static_cast<int>(std::max(pm.ranks.size(), mm.ranks.size()));
  std::vector<diff_row> ranks(static_cast<std::size_t>(R));
  std::vector<diff_row> kinds(num_action_kinds);
  std::vector<double> rank_err(static_cast<std::size_t>(R), 0), kind_err(num_action_kinds, 0);
  std::vector<std::size_t> rank_n(static_cast<std::size_t>(R), 0), kind_n(num_action_kinds, 0);
  for (int r = 0; r < R; ++r)
    ranks[static_cast<std::size_t>(r)].name = "rank " + std::to_string(r);
  for (int k = 0; k < num_action_kinds; ++k)
    kinds[static_cast<std::size_t>(k)].name = std::string(to_string(static_cast<action_kind>(k)));
  for (const auto& [i, j] : match.pairs) {
    const trace_event& e = predicted.events[i];
    const trace_event& me = measured.events[j];
    auto& rr = ranks[static_cast<std::size_t>(e.rank)];
    auto& kr = kinds[static_cast<std::size_t>(e.act.kind)];
    ++rr.matched;
    ++kr.matched;
    kr.predicted_us += e.duration_us();
    kr.measured_us += me.duration_us();
    if (is_compute(e.act.kind)) {
      rr.predicted_us += e.duration_us();
      rr.measured_us += me.duration_us();
    }
    if (me.duration_us() > 0) {
      const double rel = std::abs(e.duration_us() - me.duration_us()) / me.duration_us();
      rank_err[static_cast<std::size_t>(e.rank)] += rel;
      ++rank_n[static_cast<std::size_t>(e.rank)];
      kind_err[static_cast<std::size_t>(e.act.kind)] += rel;
      ++kind_n[static_cast<std::size_t>(e.act.kind)];
    }
  }
  for (int r = 0; r < R; ++r) {
    auto& rr = ranks[static_cast<std::size_t>(r)];
    if (rank_n[static_cast<std::size_t>(r)])
      rr.mean_abs_relative_error = rank_err[static_cast<std::size_t>(r)] / static_cast<double>(rank_n[static_cast<std::size_t>(r)]);
    d.ranks.push_back(rr);
  }
  for (int k = 0; k < num_action_kinds; ++k) {
    auto& kr = kinds[static_cast<std::size_t>(k)];
    if (kind_n[static_cast<std::size_t>(k)])
      kr.mean_abs_relative_error = kind_err[static_cast<std::size_t>(k)] / static_cast<double>(kind_n[static_cast<std::size_t>(k)]);
    if (kr.matched)
      d.kinds.push_back(kr);
  }
  return d;
}

std::string format_summary(const trace& t, const trace_metrics& m, std::size_t max_gaps) {
  std::ostringstream o;
  if (!t.run.empty())
    o << "run: " << t.run << "\n";
  o << "ranks: " << m.ranks.size() << "  actions: " << m.num_compute << " compute, " << m.num_comm << " transfers";
  if (m.num_receives > 0)
    o << " (" << m.num_sends << " sends, " << m.num_receives << " receives)";
  if (m.num_reduce_grads > 0)
    o << ", " << m.num_reduce_grads << " gradient all-reduces over the replicas (REDUCE_GRAD)";
  o << "\n";
  if (const int k = steps_in(t); k > 1)
    o << "time of all " << k << " steps: " << fmt("%.3f", m.step_time_us) << " us\n";
  else
    o << "step time: " << fmt("%.3f", m.step_time_us) << " us\n";
  for (const auto& mk : t.markers)
    o << "marker: " << mk.name << " on rank " << mk.rank << " at " << fmt("%.3f", mk.t_us) << " us"
      << (mk.detail.empty() ? "" : ": " + mk.detail) << "\n";
  o << "bubble fraction: " << fmt("%.4f", m.bubble_fraction) << "  utilisation: " << fmt("%.4f", m.utilisation) << "\n";
  o << "rank  actions      busy_us    bubble  util    comm_us  peak_mem\n";
  for (const auto& r : m.ranks) {
    char line[160];
    std::snprintf(line, sizeof line, "%4d  %7zu  %11.3f  %.4f  %.4f  %9.3f  %llu\n", r.rank, r.num_actions, r.busy_us,
                  r.bubble_fraction, r.utilisation, r.comm_us, static_cast<unsigned long long>(r.peak_memory));
    o << line;
  }
  o << "per kind:";
  for (int k = 0; k < num_action_kinds; ++k)
    if (m.kind_count[static_cast<std::size_t>(k)])
      o << "  " << to_string(static_cast<action_kind>(k)) << " x" << m.kind_count[static_cast<std::size_t>(k)] << " "
        << fmt("%.3f", m.kind_us[static_cast<std::size_t>(k)]) << " us";
  o << "\n";
  std::array<double, num_idle_causes> by_cause{};
  for (const auto& g : m.gaps)
    by_cause[static_cast<std::size_t>(g.cause)] += g.duration_us();
  o << "idle by cause:";
  for (int c = 0; c < num_idle_causes; ++c)
    o << "  " << to_string(static_cast<idle_cause>(c)) << " " << fmt("%.3f", by_cause[static_cast<std::size_t>(c)]) << " us";
  o << "\n";
  o << "critical path: " << m.critical_path.size() << " actions, " << fmt("%.3f", m.critical_path_busy_us)
    << " us compute of " << fmt("%.3f", m.step_time_us) << " us:";
  for (std::size_t i = 0; i < m.critical_path.size() && i < 40; ++i) {
    const auto& e = t.events[m.critical_path[i]];
    o << " " << to_string(e.act) << "@" << e.rank;
  }
  if (m.critical_path.size() > 40)
    o << " ...";
  o << "\n";
  if (m.peak_memory)
    o << "peak memory: " << m.peak_memory << " bytes\n";
  std::vector<const idle_gap*> gaps;
  for (const auto& g : m.gaps)
    gaps.push_back(&g);
  std::stable_sort(gaps.begin(), gaps.end(), [](auto* a, auto* b) { return a->duration_us() > b->duration_us(); });
  o << "largest idle gaps:\n";
  for (std::size_t i = 0; i < gaps.size() && i < max_gaps; ++i)
    o << "  " << gaps[i]->describe() << "\n";
  return o.str();
}

std::string format_diff(const trace_diff& d) {
  std::ostringstream o;
  auto rel = [](double p, double m) { return m != 0 ? (p - m) / m : 0.0; };
  o << "step time: predicted " << fmt("%.3f", d.predicted_step_us) << " us, measured " << fmt("%.3f", d.measured_step_us)
    << " us, error " << fmt("%+.2f%%", 100 * rel(d.predicted_step_us, d.measured_step_us)) << "\n";
  o << "bubble fraction: predicted " << fmt("%.4f", d.predicted_bubble) << ", measured " << fmt("%.4f", d.measured_bubble)
    << "\n";
  o << "matched actions: " << d.matched << "  only predicted: " << d.only_predicted << "  only measured: " << d.only_measured
    << "\n";
  if (d.receives_unpaired > 0)
    o << "receives not compared: " << d.receives_unpaired
      << " (the other trace records each transfer by its send alone)\n";
  auto table = [&](const char* title, const std::vector<diff_row>& rows) {
    o << title << "         matched  predicted_us   measured_us     error   mean|rel err|\n";
    for (const auto& r : rows) {
      char line[200];
      std::snprintf(line, sizeof line, "%-14s %7zu  %12.3f  %12.3f  %+7.2f%%  %7.2f%%\n", r.name.c_str(), r.matched,
                    r.predicted_us, r.measured_us, 100 * r.relative_error(), 100 * r.mean_abs_relative_error);
      o << line;
    }
  };
  table("per rank", d.ranks);
  table("per kind", d.kinds);
  return o.str();
}

} // namespace pippy
