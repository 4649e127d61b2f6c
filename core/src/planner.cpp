#include "pippy/core/planner.hpp"

#include "pippy/core/json_input.hpp"

#include "pippy/core/text_file.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <tuple>

#include "pippy/core/error.hpp"
#include "pippy/core/flat_evaluator.hpp"
#include "pippy/core/generators.hpp"

namespace pippy {
namespace {

std::string num(long long v) { return std::to_string(v); }

// Divisors of g up to `limit`, ascending.
std::vector<int> divisors(std::int64_t g, int limit) {
  std::vector<int> out;
  for (std::int64_t d = 1; d <= limit && d <= g; ++d)
    if (g % d == 0)
      out.push_back(static_cast<int>(d));
  return out;
}

// The micro-batch counts to try, checked.
std::vector<int> microbatch_counts(const plan_options& o) {
  if (o.global_batch < 0)
    throw input_error("global-batch must be positive (got " + num(o.global_batch) + ")");
  std::vector<int> out = o.microbatches;
  if (out.empty())
    out = o.global_batch > 0 ? divisors(o.global_batch, 1024)
                             : std::vector<int>{o.num_ranks, 2 * o.num_ranks, 4 * o.num_ranks, 8 * o.num_ranks};
  for (int m : out) {
    if (m < 1)
      throw input_error("microbatches must be at least 1 (got " + num(m) + ")");
    if (o.global_batch > 0 && m > o.global_batch)
      throw input_error("microbatches: " + num(m) + " micro-batches need at least as many rows, but the global batch has " +
                        num(o.global_batch));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The V to try, checked against the layers (or the profile's own stages) there are to cut.
std::vector<int> stage_counts(const cost_table& profile, const plan_options& o) {
  const int R = o.num_ranks;
  const bool per_layer = !profile.layers.empty();
  const int L = static_cast<int>(per_layer ? profile.layers.size() : profile.stages.size());
  std::vector<int> out = o.stages_per_rank;
  if (out.empty()) {
    if (per_layer) {
      if (L < R)
        throw input_error("ranks: " + num(R) + " ranks need at least as many layers, but the profile has " + num(L));
      for (int v = 1; v * R <= L; ++v)
        out.push_back(v);
    } else {
      if (L % R != 0)
        throw input_error("ranks: the profile has " + num(L) + " stages and no per-layer costs ('layers'), so the " +
                          "plan uses its stages as they are: " + num(R) + " ranks do not divide them");
      out.push_back(L / R);
    }
  }
  for (int v : out) {
    if (v < 1)
      throw input_error("stages-per-rank must be at least 1 (got " + num(v) + ")");
    if (per_layer && static_cast<long long>(v) * R > L)
      throw input_error("stages-per-rank: " + num(v) + " stages on each of " + num(R) + " ranks need " + num(v * R) +
                        " layers, but the profile has " + num(L));
    if (!per_layer && static_cast<long long>(v) * R != L)
      throw input_error("stages-per-rank: without per-layer costs the plan uses the profile's " + num(L) +
                        " stages as they are, not " + num(v) + " x " + num(R));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The profile's optimizer steps (U of its stages) shared among regrouped stages by parameter bytes (an
// optimizer's time follows the parameters it updates), or evenly without parameter sizes: for layers
// whose own optimizer steps were not measured (group_layers sums those that were).
void share_optimizer_step(const cost_table& profile, std::vector<stage_cost>& stages) {
  if (std::any_of(profile.layers.begin(), profile.layers.end(), [](const layer_cost& l) { return l.U > 0; }))
    return;
  double total_u = 0, total_params = 0;
  for (const auto& s : profile.stages)
    total_u += s.U;
  for (const auto& s : stages)
    total_params += static_cast<double>(s.param_bytes);
  for (auto& s : stages)
    s.U = total_params > 0 ? total_u * static_cast<double>(s.param_bytes) / total_params
                           : total_u / static_cast<double>(stages.size());
}

// The stages of a split and their per-micro-batch scale: what a candidate is scored with.
cost_table stage_costs(const cost_table& profile, const plan_options& o, const std::vector<int>& boundaries, int M) {
  cost_table c;
  for (const auto& l : profile.links) // a profile of more ranks than the plan's: the others' links go
    if (l.src < o.num_ranks && l.dst < o.num_ranks)
      c.links.push_back(l);
  c.replica_link = profile.replica_link;
  c.replica_reduce_scatter_by_allreduce = profile.replica_reduce_scatter_by_allreduce;
  c.action_overhead_us = profile.action_overhead_us;
  c.step_overhead_us = profile.step_overhead_us;
  c.arrival_cost_us = profile.arrival_cost_us;
  c.send_posting = profile.send_posting;
  c.received_input = profile.received_input;
  // The profile's shared_cpus stay behind (its own ranks'); the plan's are the candidate's on o.cpus.
  if (o.cpus > 0)
    c.shared_cpus = ranks_sharing_bound_cpus(o.num_ranks * std::max(1, o.data_parallel.replicas), o.cpus);
  c.microbatch_rows = profile.microbatch_rows;
  c.jitter = profile.jitter;
  c.seed = profile.seed;
  const bool sized = std::any_of(profile.layers.begin(), profile.layers.end(),
                                 [](const layer_cost& l) { return !l.other_sizes.empty(); });
  if (o.global_batch > 0 && profile.microbatch_rows > 0 && sized) {
    // The layers at the average micro-batch (through the sizes they were measured at), uneven
    // micro-batches in proportion around it.
    const std::int64_t rows = std::max<std::int64_t>(1, o.global_batch / M);
    c.stages = group_layers(layers_at_rows(profile, rows), boundaries);
    share_optimizer_step(profile, c.stages);
    // A received input's cost follows its tensor, which grows with the rows like the layers' times.
    const double rows_ratio = static_cast<double>(rows) / static_cast<double>(profile.microbatch_rows);
    c.received_input = {.F = profile.received_input.F * rows_ratio, .B = profile.received_input.B * rows_ratio};
    c.microbatch_rows = rows;
    c.scale_by_rows(o.global_batch, M);
    return c;
  }
  c.stages = profile.layers.empty() ? profile.stages : group_layers(profile.layers, boundaries);
  if (!profile.layers.empty())
    share_optimizer_step(profile, c.stages);
  if (o.global_batch > 0 && profile.microbatch_rows > 0) // costs scale with the rows of each micro-batch
    for (std::int64_t rows : chunk_sizes(o.global_batch, M))
      c.microbatch_scale.push_back(static_cast<double>(rows) / static_cast<double>(profile.microbatch_rows));
  return c;
}

std::vector<std::string> split_point_names(const cost_table& profile, const std::vector<int>& boundaries) {
  std::vector<std::string> out;
  for (std::size_t k = 1; k < boundaries.size(); ++k) {
    const auto i = static_cast<std::size_t>(boundaries[k]);
    out.push_back(profile.layers[i].name.empty() ? "layers[" + std::to_string(i) + "]" : profile.layers[i].name);
  }
  return out;
}

} // namespace

std::vector<int> balanced_split(const std::vector<double>& times, int num_stages) {
  const int L = static_cast<int>(times.size()), S = num_stages;
  if (S < 1 || S > L)
    throw input_error("stages: cannot cut " + num(L) + " layers into " + num(S) + " non-empty stages");
  const auto n = static_cast<std::size_t>(L) + 1;
  std::vector<double> pre(n, 0.0);
  for (int i = 0; i < L; ++i)
    pre[static_cast<std::size_t>(i) + 1] = pre[static_cast<std::size_t>(i)] + times[static_cast<std::size_t>(i)];
  // best[j]: the smallest largest sum of the first j layers in k groups; cut[k * n + j]: where the k-th
  // group of that split starts. With k - 1 groups for the first i layers, the k-th takes layers i..j-1.
  std::vector<double> best(pre), next(n, 0.0);
  std::vector<int> cut(static_cast<std::size_t>(S + 1) * n, 0);
  for (int k = 2; k <= S; ++k) {
    int p = k - 1;
    for (int j = k; j <= L - (S - k); ++j) {
      // f(i) = max(best[i], sum of i..j-1): best[] grows with i and the sum shrinks, so f falls, then
      // rises, and its lowest point moves right as j grows: the pointer only moves forward.
      auto f = [&](int i) {
        return std::max(best[static_cast<std::size_t>(i)], pre[static_cast<std::size_t>(j)] - pre[static_cast<std::size_t>(i)]);
      };
      while (p + 1 <= j - 1 && f(p + 1) <= f(p))
        ++p;
      next[static_cast<std::size_t>(j)] = f(p);
      cut[static_cast<std::size_t>(k) * n + static_cast<std::size_t>(j)] = p;
    }
    std::swap(best, next);
  }
  std::vector<int> boundaries(static_cast<std::size_t>(S), 0);
  int j = L;
  for (int k = S; k >= 2; --k) {
    j = cut[static_cast<std::size_t>(k) * n + static_cast<std::size_t>(j)];
    boundaries[static_cast<std::size_t>(k) - 1] = j;
  }
  return boundaries;
}

namespace {
// The options of one replica of a candidate: its ranks, and its share of the global batch.
plan_options replica_options(const plan_options& options, const plan_candidate& c) {
  plan_options o = options;
  o.processes = 0;
  if (c.ranks > 0)
    o.num_ranks = c.ranks;
  o.data_parallel.replicas = c.replicas;
  if (o.global_batch > 0)
    o.global_batch /= c.replicas;
  return o;
}

// What candidates are scored under: the options' state factor and no cap (a candidate fits when its peak
// is under the cap).
memory_model uncapped(const memory_model& memory) { return {.state_factor = memory.state_factor, .cap_bytes = 0}; }

// Work (rows with a global batch, else micro-batches) per second, at one step of M micro-batches in step_us.
double throughput_of(const plan_options& o, bool rows_known, int microbatches, double step_us) {
  const double work = rows_known ? static_cast<double>(o.global_batch) : static_cast<double>(microbatches);
  return step_us > 0 ? work / (step_us * 1e-6) : 0.0;
}

plan_result plan_one_shape(const cost_table& profile, const plan_options& o);
} // namespace

schedule plan_schedule(const plan_options& options, const plan_candidate& c) {
  return make_schedule({.name = c.schedule, .num_ranks = c.ranks > 0 ? c.ranks : options.num_ranks,
                        .num_microbatches = c.microbatches,
                        .stages_per_rank = c.stages_per_rank});
}

cost_table plan_costs(const cost_table& profile, const plan_options& options, const plan_candidate& c) {
  return stage_costs(profile, replica_options(options, c), c.boundaries, c.microbatches);
}

namespace {
plan_result plan_meshes(const cost_table& profile, const plan_options& o);

// Time per unit of work: the step with a global batch (the same rows for all), else per micro-batch.
double per_work(const plan_result& r, const plan_candidate& c, double step_us) {
  return r.rows_known ? step_us : step_us / static_cast<double>(c.microbatches);
}

// The rerank pool ranked again by the step the runtime measures (plan_options::rerank_pool), throughput
// from it.
void rank_by_expected_step(const cost_table& profile, const plan_options& o, plan_result& out) {
  if (o.rerank_pool < 0)
    throw input_error("rerank pool must be at least 0 (got " + num(o.rerank_pool) + ")");
  const auto pool = std::min(out.candidates.size(), static_cast<std::size_t>(o.rerank_pool));
  flat_evaluator ev;
  for (std::size_t k = 0; k < pool; ++k) {
    plan_candidate& c = out.candidates[k];
    c.expected_step_us = plan_expected_step_us(ev, profile, o, c);
    c.throughput = throughput_of(o, out.rows_known, c.microbatches, c.expected_step_us);
  }
  std::stable_sort(out.candidates.begin(), out.candidates.begin() + static_cast<std::ptrdiff_t>(pool),
                   [&](const plan_candidate& a, const plan_candidate& b) {
                     return std::make_tuple(!a.fits, per_work(out, a, a.expected_step_us)) <
                            std::make_tuple(!b.fits, per_work(out, b, b.expected_step_us));
                   });
}
} // namespace

double plan_expected_step_us(flat_evaluator& ev, const cost_table& profile, const plan_options& o, const plan_candidate& c) {
  cost_table costs = plan_costs(profile, o, c);
  costs.noise = profile.noise;
  return expected_step_us(ev, plan_schedule(o, c), costs, o.links, uncapped(o.memory),
                          {.replicas = c.replicas, .sync = o.data_parallel.sync, .zero1 = c.zero1})
      .step_us;
}

plan_result make_plan(const cost_table& profile, const plan_options& o) {
  if (o.cpus < 0)
    throw input_error("cpus must be at least 0 (0: a CPU for each rank; got " + num(o.cpus) + ")");
  plan_result out = o.processes <= 0 ? plan_one_shape(profile, o) : plan_meshes(profile, o);
  rank_by_expected_step(profile, o, out);
  return out;
}

namespace {
plan_result plan_meshes(const cost_table& profile, const plan_options& o) {
  if (o.global_batch <= 0)
    throw input_error("processes: planning R x D needs the global batch (--global-batch), which the replicas share");
  plan_result out;
  std::string why;
  for (int D = 1; D <= o.processes; ++D) {
    if (o.processes % D != 0 || o.global_batch % D != 0)
      continue;
    plan_options one = o;
    one.processes = 0;
    one.num_ranks = o.processes / D;
    one.global_batch = o.global_batch / D;
    one.data_parallel.replicas = D;
    try {
      plan_result r = plan_one_shape(profile, one);
      for (auto& c : r.candidates) {
        c.throughput *= D; // every replica's rows in one step
        out.candidates.push_back(std::move(c));
      }
      out.skipped += r.skipped, out.repeats += r.repeats, out.actions += r.actions;
      out.layers = r.layers, out.per_layer = r.per_layer, out.rows_known = r.rows_known;
    } catch (const input_error& e) {
      why = e.what(); // this R has no candidate (e.g. more stages than layers)
    }
  }
  if (out.candidates.empty())
    throw input_error("processes: no R x D = " + num(o.processes) + " has a candidate" + (why.empty() ? "" : ": " + why));
  std::stable_sort(out.candidates.begin(), out.candidates.end(), [](const plan_candidate& a, const plan_candidate& b) {
    return std::make_tuple(!a.fits, a.step_us, a.peak_memory_bytes, a.replicas) <
           std::make_tuple(!b.fits, b.step_us, b.peak_memory_bytes, b.replicas);
  });
  return out;
}

plan_result plan_one_shape(const cost_table& profile, const plan_options& o) {
  if (o.num_ranks < 1)
    throw input_error("ranks must be at least 1 (got " + num(o.num_ranks) + ")");
  std::vector<std::string> names = o.schedules;
  if (names.empty())
    names.assign(schedule_names().begin(), schedule_names().end());
  for (const auto& name : names)
    if (std::find(schedule_names().begin(), schedule_names().end(), name) == schedule_names().end())
      make_schedule({.name = name}); // throws the generators' own "unknown name" error
  const std::vector<int> Ms = microbatch_counts(o);
  const std::vector<int> Vs = stage_counts(profile, o);
  plan_result out;
  out.per_layer = !profile.layers.empty();
  out.layers = static_cast<int>(out.per_layer ? profile.layers.size() : profile.stages.size());
  out.rows_known = o.global_batch > 0;
  // Splits balance compute (F + B per layer); links and memory are the evaluator's to judge.
  std::vector<double> layer_times;
  for (const auto& l : profile.layers)
    layer_times.push_back(l.F + l.B);
  flat_evaluator ev;
  for (int V : Vs) {
    const std::vector<int> boundaries = out.per_layer ? balanced_split(layer_times, V * o.num_ranks) : std::vector<int>{};
    const std::vector<std::string> split_points = out.per_layer ? split_point_names(profile, boundaries)
                                                                : std::vector<std::string>{};
    for (int M : Ms) {
      const cost_table costs = stage_costs(profile, o, boundaries, M);
      std::vector<std::vector<std::vector<action>>> scored; // action lists of this V and M, to drop repeats
      for (const auto& name : names) {
        schedule s;
        try {
          s = make_schedule({.name = name, .num_ranks = o.num_ranks, .num_microbatches = M, .stages_per_rank = V});
        } catch (const input_error&) {
          ++out.skipped; // this schedule does not take this V or M
          continue;
        }
        if (std::find(scored.begin(), scored.end(), s.ranks) != scored.end()) {
          ++out.repeats; // the same actions under another name (interleaved-zb with V = 1 is zb-h1)
          continue;
        }
        scored.push_back(s.ranks);
        const flat_result& r = ev.evaluate(add_communication(s), costs, o.links, uncapped(o.memory), o.data_parallel);
        out.actions += r.actions;
        plan_candidate c{.schedule = name, .ranks = o.num_ranks, .replicas = o.data_parallel.replicas,
                         .zero1 = o.data_parallel.sharded(), .stages_per_rank = V,
                         .microbatches = M, .boundaries = boundaries,
                         .split_points = split_points, .step_us = r.makespan_us + profile.step_overhead_us,
                         .bubble_fraction = r.bubble_fraction, .peak_memory_bytes = r.peak_memory_bytes()};
        c.throughput = throughput_of(o, out.rows_known, M, c.step_us);
        c.fits = o.memory.cap_bytes == 0 || c.peak_memory_bytes <= o.memory.cap_bytes;
        out.candidates.push_back(std::move(c));
      }
    }
  }
  if (out.candidates.empty())
    throw input_error("schedule: no schedule takes any of the stages-per-rank and microbatches tried on " +
                      num(o.num_ranks) + " ranks");
  auto order = [&](const std::string& name) { return std::find(names.begin(), names.end(), name) - names.begin(); };
  std::stable_sort(out.candidates.begin(), out.candidates.end(), [&](const plan_candidate& a, const plan_candidate& b) {
    return std::make_tuple(!a.fits, per_work(out, a, a.step_us), a.peak_memory_bytes, order(a.schedule), a.stages_per_rank,
                           a.microbatches) <
           std::make_tuple(!b.fits, per_work(out, b, b.step_us), b.peak_memory_bytes, order(b.schedule), b.stages_per_rank,
                           b.microbatches);
  });
  return out;
}
} // namespace

std::string to_plan_json(const plan_candidate& c, int num_ranks) {
  const nlohmann::json j{{"schedule", c.schedule},
                         {"ranks", c.ranks > 0 ? c.ranks : num_ranks},
                         {"replicas", c.replicas},
                         {"zero1", c.zero1},
                         {"stages_per_rank", c.stages_per_rank},
                         {"microbatches", c.microbatches},
                         {"boundaries", c.boundaries},
                         {"split_points", c.split_points},
                         {"predicted_step_us", c.expected_step_us > 0 ? c.expected_step_us : c.step_us},
                         {"bubble_fraction", c.bubble_fraction},
                         {"peak_memory_bytes", c.peak_memory_bytes},
                         {"fits", c.fits}};
  return j.dump(2) + "\n";
}

emitted_plan load_plan(const std::string& dir) {
  const std::string path = dir + "/plan.json", where = "plan file '" + path + "'";
  const std::string text = read_text_file(path, where + ": cannot open it");
  const nlohmann::json j = parse_json(text, where); // every nlohmann error, 1e309's out_of_range too
  if (!j.is_object())
    throw input_error(where + ": expected an object");
  auto size = [&](const char* k) {
    if (!j.contains(k) || !j[k].is_number_integer() || j[k].get<std::int64_t>() < 1 || j[k].get<std::int64_t>() > (1 << 20))
      throw input_error(where + ": " + k + " must be a whole number from 1 to 1048576" +
                        (j.contains(k) ? " (got " + j[k].dump() + ")" : " (missing)"));
    return static_cast<int>(j[k].get<std::int64_t>());
  };
  emitted_plan p;
  if (!j.contains("schedule") || !j["schedule"].is_string())
    throw input_error(where + ": schedule must be a schedule name");
  p.schedule = j["schedule"].get<std::string>();
  p.ranks = size("ranks");
  p.replicas = j.contains("replicas") ? size("replicas") : 1; // plans before pp x dp have none
  if (j.contains("zero1")) {
    if (!j["zero1"].is_boolean())
      throw input_error(where + ": zero1 must be true or false (got " + j["zero1"].dump() + ")");
    p.zero1 = j["zero1"].get<bool>();
    if (p.zero1 && p.replicas < 2)
      throw input_error(where + ": zero1 " + zero1_needs_replicas("replicas") + " (got " +
                        std::to_string(p.replicas) + ")");
  }
  p.stages_per_rank = size("stages_per_rank");
  p.microbatches = size("microbatches");
  if (j.contains("boundaries")) {
    const auto& b = j["boundaries"];
    if (!b.is_array())
      throw input_error(where + ": boundaries must be an array of layer indices");
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (!b[i].is_number_integer() || b[i].get<std::int64_t>() < 0 || b[i].get<std::int64_t>() > (1 << 20))
        throw input_error(where + ": boundaries[" + std::to_string(i) + "] must be a layer index (got " + b[i].dump() + ")");
      const int v = static_cast<int>(b[i].get<std::int64_t>());
      if ((i == 0 && v != 0) || (i > 0 && v <= p.boundaries.back()))
        throw input_error(where + ": boundaries must start at 0 and increase (boundaries[" + std::to_string(i) +
                          "] is " + std::to_string(v) + ")");
      p.boundaries.push_back(v);
    }
    if (!p.boundaries.empty() &&
        static_cast<std::int64_t>(p.boundaries.size()) != static_cast<std::int64_t>(p.ranks) * p.stages_per_rank)
      throw input_error(where + ": " + std::to_string(p.boundaries.size()) + " boundaries for " +
                        std::to_string(p.ranks) + " ranks x " + std::to_string(p.stages_per_rank) + " stages");
  }
  return p;
}

} // namespace pippy
