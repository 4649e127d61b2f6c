#include "pippy/core/cost_table.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "pippy/core/error.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/core/topology.hpp"
#include "pippy/core/text_file.hpp"

namespace pippy {
namespace {

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

// One stage's times from the roofline; `where` prefixes error messages. The device is checked by the caller.
stage_cost roofline_stage_cost(const roofline_stage& s, const device_spec& device, const std::string& where) {
  auto check = [&](const char* field, double v) {
    if (!(v >= 0) || !std::isfinite(v))
      throw input_error(where + field + " must be a finite non-negative number (got " + num(v) + ")");
  };
  check("forward_flops", s.forward_flops), check("forward_bytes", s.forward_bytes);
  check("backward_factor", s.backward_factor);
  const double f = 1e6 * std::max(s.forward_flops / device.peak_flops, s.forward_bytes / device.memory_bandwidth);
  stage_cost c;
  c.F = f;
  c.B = f * s.backward_factor;
  c.I = c.W = c.B / 2;
  c.U = 0;
  c.activation_bytes = s.activation_bytes;
  c.weight_input_bytes = s.activation_bytes / 2;
  c.param_bytes = s.param_bytes;
  return c;
}

// Fills B from I + W, or I and W from B / 2, and checks signs; `where` prefixes error messages.
stage_cost complete(std::optional<double> F, std::optional<double> I, std::optional<double> W, std::optional<double> B,
                    std::optional<double> U, const std::string& where) {
  auto check = [&](const char* field, std::optional<double> v) {
    if (v && !(*v >= 0) )
      throw input_error(where + field + " must be a non-negative number of microseconds (got " + num(*v) + ")");
    if (v && !(*v <= limits::max_time_us))
      throw input_error(where + field + " must be at most " + num(limits::max_time_us) + " microseconds (got " + num(*v) +
                        ")");
  };
  check("F", F), check("I", I), check("W", W), check("B", B), check("U", U);
  stage_cost c;
  c.F = F.value_or(1.0);
  c.U = U.value_or(0.0);
  if (B && !I && !W) {
    c.B = *B, c.I = *B / 2, c.W = *B / 2;
  } else if (!B && (I || W)) {
    c.I = I.value_or(W.value_or(1.0));
    c.W = W.value_or(c.I);
    c.B = c.I + c.W;
  } else if (B) {
    c.B = *B;
    c.I = I.value_or(*B - W.value_or(*B / 2));
    c.W = W.value_or(*B - c.I);
    // A part given alone is B minus the other. Both given may add up to more than B: a measured split
    // backward can take longer than the fused one (W as a second pass, or measured in another context),
    // and the runtime's profiles of DualPipeV, which runs both, do show it.
    if (c.I < 0 || c.W < 0)
      throw input_error(where + "I or W given alone must not exceed B (I=" + num(c.I) + ", W=" + num(c.W) +
                        ", B=" + num(c.B) + ")");
  } else {
    c.B = 2, c.I = 1, c.W = 1;
  }
  return c;
}

// A compute action's time before micro-batch scaling and jitter.
double time_of(const stage_cost& c, action_kind kind) {
  switch (kind) {
  case action_kind::forward: return c.F;
  case action_kind::backward_input: return c.I;
  case action_kind::backward_weight: return c.W;
  case action_kind::full_backward: return c.B;
  default: return c.U; // optimizer_step, the last compute kind
  }
}

} // namespace

double cost_table::operator()(const action& a, int replica) const {
  if (a.stage < 0 || a.stage >= static_cast<int>(stages.size()))
    throw input_error("cost model: stage " + std::to_string(a.stage) + " is out of range (" +
                      std::to_string(stages.size()) + " stages have costs)");
  if (!is_compute(a.kind))
    return 0; // transfers are the link model's
  double t = time_of(stages[static_cast<std::size_t>(a.stage)], a.kind) * scale(a.microbatch);
  if (jitter == 0 && noise.empty())
    return t; // what the draws below give without jitter or noise (a factor of exactly 1), without the hash
  // Replica 0 draws as a pipeline alone does; the others draw their own (seed, action) (the golden ratio's
  // multiples keep them apart from the chain's seeds seed + k).
  const std::uint64_t replica_seed = seed + static_cast<std::uint64_t>(replica) * 0x9e3779b97f4a7c15ULL;
  const std::uint64_t h = splitmix(replica_seed ^ splitmix((static_cast<std::uint64_t>(a.stage) << 40) ^
                                                   (static_cast<std::uint64_t>(a.kind) << 32) ^
                                                   static_cast<std::uint32_t>(a.microbatch)));
  if (!noise.empty()) // the measured distribution, by linear interpolation between its quantiles
    t *= quantile_at(noise, static_cast<double>(splitmix(h ^ 0x6e6f697365ULL) >> 11) * 0x1.0p-53); // p in [0, 1)
  if (jitter == 0)
    return t;
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53 * 2.0 - 1.0; // [-1, 1)
  return t * std::max(0.0, 1.0 + jitter * u);
}

double cost_table::received_input_us(const action& a, const pipeline_shape& shape) const {
  // Scaled with the micro-batch (microbatch_scale), as its tensor is. The costs are looked at before the
  // ranks: the engines ask for every action, and most tables have none.
  if (a.kind == action_kind::forward)
    return received_input.F > 0 && a.stage > 0 && shape.rank_of(a.stage - 1) != shape.rank_of(a.stage)
               ? received_input.F * scale(a.microbatch)
               : 0.0;
  if (is_input_backward(a.kind))
    return received_input.B > 0 && a.stage + 1 < shape.num_stages() && shape.rank_of(a.stage + 1) != shape.rank_of(a.stage)
               ? received_input.B * scale(a.microbatch)
               : 0.0;
  return 0.0;
}

std::string cost_table::stage_first_layers_problem(int num_stages) const {
  if (static_cast<int>(stage_first_layers.size()) != num_stages)
    return " has " + std::to_string(stage_first_layers.size()) + " entries but the schedule has " +
           std::to_string(num_stages) + " stages";
  for (std::size_t s = 0; s < stage_first_layers.size(); ++s) {
    const int first = stage_first_layers[s];
    if ((s == 0 && first != 0) || (s > 0 && first <= stage_first_layers[s - 1]) ||
        (!layers.empty() && first >= static_cast<int>(layers.size())))
      return "[" + std::to_string(s) + "]: " + std::to_string(first) + " (they begin at 0 and rise, each below the " +
             std::to_string(layers.size()) + " layers)";
  }
  return "";
}

std::uint64_t cost_table::transfer_bytes(action_kind kind, int stage, int microbatch) const {
  // The boundary between stage b and b+1 carries b's output forward and its gradient back.
  const int boundary = kind == action_kind::send_f || kind == action_kind::recv_b ? stage : stage - 1;
  const auto& c = stages.at(static_cast<std::size_t>(boundary));
  return scaled(c.output_bytes ? c.output_bytes : c.activation_bytes, microbatch);
}

const link_class& link_model::between(int rank_a, int rank_b) const {
  if (ranks_per_host <= 0)
    return intra_host;
  return rank_a / ranks_per_host == rank_b / ranks_per_host ? intra_host : inter_host;
}

double quantile_at(const std::vector<double>& sorted, double p) {
  const double x = std::clamp(p * static_cast<double>(sorted.size()) - 0.5, 0.0, static_cast<double>(sorted.size() - 1));
  const auto i = static_cast<std::size_t>(x);
  return i + 1 < sorted.size() ? sorted[i] + (x - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

memory_effect memory_effect_of(const cost_table& costs, const action& a, bool forward_only) {
  memory_effect e;
  switch (a.kind) {
  case action_kind::forward:
    e.held_at_start = costs.activation_bytes(a.stage, a.microbatch); // scaled by its rows
    e.activations_at_start = 1;
    if (forward_only) // nothing waits for a gradient: the activations go when F ends
      e.freed_at_end = e.held_at_start, e.activations_freed_at_end = 1, e.changes_at_end = true;
    break;
  case action_kind::full_backward:
    e.freed_at_end = costs.activation_bytes(a.stage, a.microbatch);
    e.activations_freed_at_end = 1, e.changes_at_end = true;
    break;
  case action_kind::backward_input: // keeps what W differentiates
    e.freed_at_end = costs.activation_bytes(a.stage, a.microbatch) - costs.weight_input_bytes(a.stage, a.microbatch);
    e.changes_at_end = true;
    break;
  case action_kind::backward_weight:
    e.freed_at_end = costs.weight_input_bytes(a.stage, a.microbatch);
    e.activations_freed_at_end = 1, e.changes_at_end = true;
    break;
  default:
    break;
  }
  return e;
}

std::uint64_t static_memory_bytes(const cost_table& costs, const memory_model& memory, const pipeline_shape& shape,
                                  int rank) {
  std::uint64_t bytes = 0;
  for (int s : shape.stages_of(rank))
    bytes += static_cast<std::uint64_t>(static_cast<double>(costs.stages.at(static_cast<std::size_t>(s)).param_bytes) *
                                        memory.state_factor);
  return bytes;
}

std::string out_of_memory::message() const {
  std::ostringstream o;
  o << "out of memory on rank " << rank << " at " << to_string(at) << " (t=" << t_us << " us): needs " << needed_bytes
    << " bytes, cap " << cap_bytes << " bytes";
  return o.str();
}

namespace {
// The least-squares line through (bytes, microseconds) points, as it is: its time at 0 bytes (possibly
// negative), its slope (possibly not positive) and the points' mean time.
struct transfer_line {
  double at_zero_us = 0, us_per_byte = 0, mean_us = 0;
};
transfer_line fit_transfer_line(const std::vector<std::pair<double, double>>& bytes_us) {
  const double n = static_cast<double>(bytes_us.size());
  double sx = 0, sy = 0;
  for (auto [x, y] : bytes_us)
    sx += x, sy += y;
  const double mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0;
  for (auto [x, y] : bytes_us)
    sxx += (x - mx) * (x - mx), sxy += (x - mx) * (y - my);
  if (bytes_us.size() < 2 || !(sxx > 0))
    throw input_error("fit_link: needs times at two or more different sizes");
  const double us_per_byte = sxy / sxx;
  return {.at_zero_us = my - us_per_byte * mx, .us_per_byte = us_per_byte, .mean_us = my};
}
} // namespace

link_class fit_link(const std::vector<std::pair<double, double>>& bytes_us) {
  const transfer_line line = fit_transfer_line(bytes_us);
  if (!(line.us_per_byte > 0))
    return link_class{.latency_us = std::max(0.0, line.mean_us), .bandwidth_gbps = 0};
  return link_class{.latency_us = std::max(0.0, line.at_zero_us), .bandwidth_gbps = 1e-3 / line.us_per_byte};
}

link_class fit_ring_link(const std::vector<std::pair<double, double>>& allreduce_bytes_us, int replicas) {
  if (replicas < 2)
    throw input_error("replica link: an all-reduce needs 2 or more replicas, got " + std::to_string(replicas));
  const double d = replicas, steps = 2.0 * (d - 1);
  std::vector<std::pair<double, double>> per_step; // one ring step: latency + (bytes / D) / bandwidth
  for (const auto& [bytes, us] : allreduce_bytes_us)
    per_step.push_back({bytes / d, us / steps});
  return fit_link(per_step);
}

link_class link_between(const cost_table& costs, const link_model& links, int src, int dst, int mesh_base) {
  if (const link_cost* measured = costs.link(src, dst))
    return link_class{measured->latency_us, measured->bandwidth_gbps};
  return links.between(mesh_base + src, mesh_base + dst);
}

const link_cost* cost_table::link(int src, int dst) const {
  for (const auto& l : links)
    if (l.src == src && l.dst == dst)
      return &l;
  return nullptr;
}

void cost_table::scale_by_rows(std::int64_t rows, int microbatches) {
  const auto sizes = chunk_sizes(rows, microbatches);
  microbatch_scale.clear();
  for (auto r : sizes)
    microbatch_scale.push_back(static_cast<double>(r) * microbatches / static_cast<double>(rows));
}

void cost_table::validate(int num_stages, const std::string& source) const {
  if (static_cast<int>(stages.size()) != num_stages)
    throw input_error(source + ": 'stages' has " + std::to_string(stages.size()) + " entries but the schedule has " +
                      std::to_string(num_stages) + " stages");
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const auto& c = stages[i];
    const std::pair<const char*, double> fields[] = {{"F", c.F}, {"I", c.I}, {"W", c.W}, {"B", c.B}, {"U", c.U}};
    for (auto [name, v] : fields)
      if (!(v >= 0) || !std::isfinite(v))
        throw input_error(source + ": stages[" + std::to_string(i) + "]." + name +
                          " must be a non-negative number of microseconds (got " + num(v) + ")");
  }
  if (!stage_first_layers.empty())
    if (const std::string why = stage_first_layers_problem(num_stages); !why.empty())
      throw input_error(source + ": stage_first_layers" + why);
  if (!stage_ranks.empty() && static_cast<int>(stage_ranks.size()) != num_stages)
    throw input_error(source + ": 'stage_ranks' has " + std::to_string(stage_ranks.size()) +
                      " entries but the schedule has " + std::to_string(num_stages) + " stages");
  if (!(jitter >= 0) || jitter > 1)
    throw input_error(source + ": jitter must be in [0, 1] (got " + num(jitter) + ")");
  if (!(action_overhead_us >= 0) || !std::isfinite(action_overhead_us))
    throw input_error(source + ": action_overhead_us must be a finite non-negative number (got " +
                      num(action_overhead_us) + ")");
  if (!(step_overhead_us >= 0) || !std::isfinite(step_overhead_us))
    throw input_error(source + ": step_overhead_us must be a finite non-negative number (got " +
                      num(step_overhead_us) + ")");
  auto check_link_class = [&](const char* name, const link_class& l) {
    if (!(l.latency_us >= 0) || !std::isfinite(l.latency_us) || !(l.bandwidth_gbps >= 0) || !std::isfinite(l.bandwidth_gbps))
      throw input_error(source + ": " + name + "'s latency_us and bandwidth_gbps must be finite non-negative numbers (got " +
                        num(l.latency_us) + ", " + num(l.bandwidth_gbps) + ")");
  };
  if (replica_link)
    check_link_class("replica_link", *replica_link);
  check_link_class("send_posting", send_posting);
  if (!(received_input.F >= 0) || !std::isfinite(received_input.F) || !(received_input.B >= 0) || !std::isfinite(received_input.B))
    throw input_error(source + ": received_input_us's F and B must be finite non-negative numbers (got " +
                      num(received_input.F) + ", " + num(received_input.B) + ")");
  if (!(arrival_cost_us >= 0) || !std::isfinite(arrival_cost_us))
    throw input_error(source + ": arrival_cost_us must be a finite non-negative number (got " +
                      num(arrival_cost_us) + ")");
  if (static_cast<std::int64_t>(noise.size()) > limits::max_noise_quantiles)
    throw input_error(source + ": noise has " + std::to_string(noise.size()) + " quantiles, at most " +
                      std::to_string(limits::max_noise_quantiles));
  for (std::size_t i = 0; i < noise.size(); ++i)
    if (!(noise[i] >= 0) || !std::isfinite(noise[i]) || noise[i] > 1e6 || (i > 0 && noise[i] < noise[i - 1]))
      throw input_error(source + ": noise[" + std::to_string(i) +
                        "] must be a finite factor from 0 to 1e6, no smaller than the one before (got " + num(noise[i]) + ")");
}

void cost_table::validate_links(int num_ranks, const std::string& source, int mesh_ranks) const {
  if (mesh_ranks < num_ranks)
    mesh_ranks = num_ranks;
  for (std::size_t i = 0; i < links.size(); ++i) {
    const auto& l = links[i];
    const std::string where = source + ": links[" + std::to_string(i) + "].";
    if (l.src < 0 || l.src >= num_ranks || l.dst < 0 || l.dst >= num_ranks || l.src == l.dst)
      throw input_error(where + "src/dst must be two different ranks below " + std::to_string(num_ranks) +
                        " (got " + std::to_string(l.src) + " -> " + std::to_string(l.dst) + ")");
  }
  std::vector<char> seen(static_cast<std::size_t>(std::max(0, mesh_ranks)), 0);
  for (std::size_t i = 0; i < shared_cpus.size(); ++i) {
    const std::string where = source + ": shared_cpus[" + std::to_string(i) + "]";
    if (shared_cpus[i].size() < 2)
      throw input_error(where + " must name at least two ranks that share a CPU (got " +
                        std::to_string(shared_cpus[i].size()) + ")");
    for (const int r : shared_cpus[i]) {
      if (r < 0 || r >= mesh_ranks)
        throw input_error(where + ": rank " + std::to_string(r) + " is not below " + std::to_string(mesh_ranks) +
                          (mesh_ranks > num_ranks ? " ranks (pipeline ranks x replicas)"
                                                  : " ranks (a pp x dp run's profile names every replica's ranks: give its --dp)"));
      if (seen[static_cast<std::size_t>(r)]++)
        throw input_error(where + ": rank " + std::to_string(r) + " is in more than one group");
    }
  }
  for (std::size_t s = 0; s < stage_ranks.size(); ++s)
    if (stage_ranks[s] < 0 || stage_ranks[s] >= num_ranks)
      throw input_error(source + ": stage_ranks[" + std::to_string(s) + "]: rank " + std::to_string(stage_ranks[s]) +
                        " is not below " + std::to_string(num_ranks) + " ranks");
}

void validate_models(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
                     const memory_model& memory, int replicas) {
  costs.validate(shape.num_stages(), "costs");
  costs.validate_links(shape.num_ranks, "costs", shape.num_ranks * std::max(1, replicas));
  auto link = [](const link_class& l, const std::string& name) {
    if (!(l.latency_us >= 0))
      throw input_error(name + ".latency_us must be non-negative (got " + std::to_string(l.latency_us) + ")");
    if (!(l.bandwidth_gbps >= 0))
      throw input_error(name + ".bandwidth_gbps must be non-negative (got " + std::to_string(l.bandwidth_gbps) + ")");
  };
  link(links.intra_host, "links.intra_host");
  link(links.inter_host, "links.inter_host");
  if (links.ranks_per_host < 0)
    throw input_error("links.ranks_per_host must be non-negative");
  if (!(memory.state_factor >= 0))
    throw input_error("memory.state_factor must be non-negative");
}

cost_table uniform_costs(int num_stages, const stage_cost& c) {
  return cost_table{.stages = std::vector<stage_cost>(static_cast<std::size_t>(std::max(0, num_stages)), c)};
}

stage_cost parse_cost_spec(std::string_view spec) {
  std::optional<double> v[5];
  const char* names[] = {"F", "I", "W", "B", "U"};
  std::size_t at = 0;
  while (at <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', at), spec.size());
    const std::string_view item = spec.substr(at, comma - at);
    at = comma + 1;
    if (item.empty())
      continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      throw input_error("--cost: '" + std::string(item) + "' is not KIND=MICROSECONDS (KIND one of F, I, W, B, U)");
    const std::string key(item.substr(0, eq)), value(item.substr(eq + 1));
    int idx = -1;
    for (int k = 0; k < 5; ++k)
      if (key == names[k])
        idx = k;
    if (idx < 0)
      throw input_error("--cost: '" + key + "' is not one of F, I, W, B, U");
    double d = 0;
    std::size_t used = 0;
    try {
      d = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != value.size())
      throw input_error("--cost: " + key + " must be a number (got '" + value + "')");
    v[idx] = d;
  }
  return complete(v[0], v[1], v[2], v[3], v[4], "--cost: ");
}

cost_table parse_cost_json(std::string_view text, const std::string& source) {
  const nlohmann::json j = parse_json(text, source);
  if (!j.is_object() || !j.contains("stages") || !j["stages"].is_array())
    throw input_error(source + ": missing 'stages' array (expected {\"stages\": [{\"F\": .., \"B\": ..}, ...]})");
  // A misspelt field would silently fall back to its default: every key must be one this file knows.
  reject_unknown_keys(j, {"stages", "device", "unit", "source", "action_overhead_us", "step_overhead_us",
                          "arrival_cost_us", "send_posting", "received_input_us", "shared_cpus", "stage_ranks", "stage_first_layers", "noise", "microbatch_rows", "links", "replica_link",
                          "replica_reduce_scatter", "layers"},
                      source + ": ");
  if (j.contains("unit") && j["unit"] != "us")
    throw input_error(source + ": 'unit' must be \"us\" (microseconds), got " + j["unit"].dump());
  // Optional roofline: {"device": {"peak_flops": .., "memory_bandwidth": ..}} plus per stage
  // "forward_flops"/"forward_bytes" (and "backward_factor", default 2) give F = max(FLOPs/peak,
  // bytes/bandwidth), B = factor * F, unless the stage gives its times.
  std::optional<device_spec> device;
  if (j.contains("device")) {
    const auto& d = j["device"];
    reject_unknown_keys(d, {"peak_flops", "memory_bandwidth"}, source + ": device.");
    auto positive = [&](const char* k) {
      if (!d.is_object() || !d.contains(k) || !d[k].is_number() || !(d[k].get<double>() > 0))
        throw input_error(source + ": device." + k + " must be a positive number");
      return d[k].get<double>();
    };
    device = device_spec{.peak_flops = positive("peak_flops"), .memory_bandwidth = positive("memory_bandwidth")};
  }
  cost_table t;
  const auto& arr = j["stages"];
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string where = source + ": stages[" + std::to_string(i) + "].";
    const auto& e = arr[i];
    if (!e.is_object())
      throw input_error(source + ": stages[" + std::to_string(i) + "] must be an object");
    reject_unknown_keys(e, {"F", "I", "W", "B", "U", "activation_bytes", "weight_input_bytes", "param_bytes",
                            "output_bytes", "forward_flops", "forward_bytes", "backward_factor"},
                        where);
    auto time = [&](const char* k) -> std::optional<double> {
      if (!e.contains(k))
        return std::nullopt;
      if (!e[k].is_number())
        throw input_error(where + k + " must be a number (got " + e[k].dump() + ")");
      return e[k].get<double>();
    };
    auto size = [&](const char* k) -> std::optional<std::uint64_t> {
      if (!e.contains(k))
        return std::nullopt;
      return static_cast<std::uint64_t>(json_integer(e[k], where + k + " (bytes)", 0, limits::max_bytes));
    };
    auto F = time("F"), I = time("I"), W = time("W"), B = time("B");
    const auto flops = time("forward_flops"), bytes = time("forward_bytes"), factor = time("backward_factor");
    if (flops || bytes) {
      if (!device)
        throw input_error(where + "forward_flops needs a top-level \"device\": {\"peak_flops\", \"memory_bandwidth\"}");
      const auto rl = roofline_stage_cost({.forward_flops = flops.value_or(0), .forward_bytes = bytes.value_or(0),
                                           .backward_factor = factor.value_or(2.0)},
                                          *device, where);
      if (!F)
        F = rl.F;
      if (!B && !I && !W)
        B = rl.B;
    }
    stage_cost c = complete(F, I, W, B, time("U"), where);
    c.activation_bytes = size("activation_bytes").value_or(0);
    c.weight_input_bytes = size("weight_input_bytes").value_or(c.activation_bytes / 2);
    if (c.weight_input_bytes > c.activation_bytes)
      throw input_error(where + "weight_input_bytes must not exceed activation_bytes");
    c.param_bytes = size("param_bytes").value_or(0);
    c.output_bytes = size("output_bytes").value_or(0);
    t.stages.push_back(c);
  }
  if (t.stages.empty())
    throw input_error(source + ": 'stages' is empty");
  auto array_of = [&](const char* k) -> const nlohmann::json* {
    if (!j.contains(k))
      return nullptr;
    if (!j[k].is_array())
      throw input_error(source + ": '" + k + "' must be an array");
    return &j[k];
  };
  // A finite non-negative number up to `hi`; `what` names the unit in the error.
  auto number = [&](const nlohmann::json& e, const std::string& where, const char* k, const char* what,
                    double hi = limits::max_time_us) {
    if (!e.contains(k))
      throw input_error(where + k + " is missing");
    return json_number(e[k], where + k, what, 0.0, hi);
  };
  auto bytes = [&](const nlohmann::json& e, const std::string& where, const char* k) -> std::uint64_t {
    if (!e.contains(k))
      return 0;
    return static_cast<std::uint64_t>(json_integer(e[k], where + k + " (bytes)", 0, limits::max_bytes));
  };
  if (j.contains("action_overhead_us"))
    t.action_overhead_us = number(j, source + ": ", "action_overhead_us", "number of microseconds");
  if (j.contains("step_overhead_us"))
    t.step_overhead_us = number(j, source + ": ", "step_overhead_us", "number of microseconds");
  if (j.contains("arrival_cost_us"))
    t.arrival_cost_us = number(j, source + ": ", "arrival_cost_us", "number of microseconds");
  if (const auto* noise = array_of("noise")) {
    if (static_cast<std::int64_t>(noise->size()) > limits::max_noise_quantiles)
      throw input_error(source + ": noise has " + std::to_string(noise->size()) + " quantiles, at most " +
                        std::to_string(limits::max_noise_quantiles));
    for (std::size_t i = 0; i < noise->size(); ++i)
      t.noise.push_back(json_number((*noise)[i], source + ": noise[" + std::to_string(i) + "]", "factor", 0.0, 1e6));
  }
  if (j.contains("microbatch_rows")) {
    const double rows = number(j, source + ": ", "microbatch_rows", "number of rows", 1e15);
    if (rows != std::floor(rows))
      throw input_error(source + ": microbatch_rows must be a whole number of rows (got " + j["microbatch_rows"].dump() + ")");
    t.microbatch_rows = static_cast<std::int64_t>(rows);
  }
  if (const auto* links = array_of("links")) {
    for (std::size_t i = 0; i < links->size(); ++i) {
      const auto& e = (*links)[i];
      const std::string where = source + ": links[" + std::to_string(i) + "].";
      if (!e.is_object())
        throw input_error(source + ": links[" + std::to_string(i) + "] must be an object");
      reject_unknown_keys(e, {"src", "dst", "latency_us", "bandwidth_gbps", "probe_latency_us"}, where);
      auto rank = [&](const char* k) {
        if (!e.contains(k) || !e[k].is_number_integer() || e[k].get<std::int64_t>() < 0 ||
            e[k].get<std::int64_t>() > (1 << 20))
          throw input_error(where + k + " must be a rank number (got " + (e.contains(k) ? e[k].dump() : "nothing") + ")");
        return static_cast<int>(e[k].get<std::int64_t>());
      };
      t.links.push_back(link_cost{.src = rank("src"), .dst = rank("dst"),
                                  .latency_us = number(e, where, "latency_us", "number of microseconds"),
                                  .bandwidth_gbps = number(e, where, "bandwidth_gbps", "number of GB/s", std::numeric_limits<double>::max()),
                                  .probe_latency_us = e.contains("probe_latency_us")
                                                          ? number(e, where, "probe_latency_us", "number of microseconds")
                                                          : 0.0});
    }
  }
  // An object of a link class's two numbers: the sends' posting, the replicas' link.
  auto link_class_at = [&](const char* key) {
    const auto& e = j[key];
    const std::string where = source + ": " + key + ".";
    if (!e.is_object())
      throw input_error(source + ": " + key + " must be an object");
    reject_unknown_keys(e, {"latency_us", "bandwidth_gbps"}, where);
    return link_class{.latency_us = number(e, where, "latency_us", "number of microseconds"),
                      .bandwidth_gbps = number(e, where, "bandwidth_gbps", "number of GB/s", std::numeric_limits<double>::max())};
  };
  if (j.contains("send_posting"))
    t.send_posting = link_class_at("send_posting");
  if (j.contains("received_input_us")) {
    const auto& e = j["received_input_us"];
    const std::string where = source + ": received_input_us.";
    if (!e.is_object())
      throw input_error(source + ": received_input_us must be an object {\"F\": us, \"B\": us}");
    reject_unknown_keys(e, {"F", "B"}, where);
    t.received_input = {.F = e.contains("F") ? number(e, where, "F", "number of microseconds") : 0.0,
                        .B = e.contains("B") ? number(e, where, "B", "number of microseconds") : 0.0};
  }
  if (const auto* groups = array_of("shared_cpus")) {
    for (std::size_t i = 0; i < groups->size(); ++i) {
      const auto& g = (*groups)[i];
      const std::string where = source + ": shared_cpus[" + std::to_string(i) + "]";
      if (!g.is_array())
        throw input_error(where + " must be an array of ranks");
      std::vector<int> ranks;
      for (std::size_t k = 0; k < g.size(); ++k)
        ranks.push_back(static_cast<int>(json_integer(g[k], where + "[" + std::to_string(k) + "] (a rank)", 0, 1 << 20)));
      t.shared_cpus.push_back(std::move(ranks));
    }
  }
  if (const auto* firsts = array_of("stage_first_layers"))
    for (std::size_t s = 0; s < firsts->size(); ++s)
      t.stage_first_layers.push_back(static_cast<int>(
          json_integer((*firsts)[s], source + ": stage_first_layers[" + std::to_string(s) + "] (a layer)", 0, 1 << 20)));
  if (const auto* ranks = array_of("stage_ranks"))
    for (std::size_t s = 0; s < ranks->size(); ++s)
      t.stage_ranks.push_back(
          static_cast<int>(json_integer((*ranks)[s], source + ": stage_ranks[" + std::to_string(s) + "] (a rank)", 0, 1 << 20)));
  if (j.contains("replica_link"))
    t.replica_link = link_class_at("replica_link");
  if (j.contains("replica_reduce_scatter")) {
    const auto& v = j["replica_reduce_scatter"];
    if (!v.is_string() || (v != "ring" && v != "allreduce"))
      throw input_error(source + ": replica_reduce_scatter must be \"ring\" or \"allreduce\", got " + v.dump());
    t.replica_reduce_scatter_by_allreduce = v == "allreduce";
  }
  if (const auto* layers = array_of("layers")) {
    for (std::size_t i = 0; i < layers->size(); ++i) {
      const auto& e = (*layers)[i];
      const std::string where = source + ": layers[" + std::to_string(i) + "].";
      if (!e.is_object())
        throw input_error(source + ": layers[" + std::to_string(i) + "] must be an object");
      reject_unknown_keys(e, {"name", "F", "I", "W", "B", "U", "other_sizes", "activation_bytes", "output_bytes",
                              "param_bytes"},
                          where);
      layer_cost l;
      if (e.contains("name")) {
        if (!e["name"].is_string())
          throw input_error(where + "name must be a string");
        l.name = e["name"].get<std::string>();
      }
      const char* us = "number of microseconds";
      l.F = number(e, where, "F", us);
      l.I = number(e, where, "I", us);
      l.W = number(e, where, "W", us);
      l.B = e.contains("B") ? number(e, where, "B", us) : l.I + l.W;
      if (e.contains("U"))
        l.U = number(e, where, "U", us);
      if (e.contains("other_sizes")) {
        const auto& sizes = e["other_sizes"];
        if (!sizes.is_array())
          throw input_error(where + "other_sizes must be an array");
        if (static_cast<std::int64_t>(sizes.size()) > limits::max_layer_sizes)
          throw input_error(where + "other_sizes has " + std::to_string(sizes.size()) + " sizes, at most " +
                            std::to_string(limits::max_layer_sizes));
        if (!sizes.empty() && t.microbatch_rows <= 0)
          throw input_error(where + "other_sizes needs the file's microbatch_rows, the size F, I, W and B were measured at");
        for (std::size_t k = 0; k < sizes.size(); ++k) {
          const auto& z = sizes[k];
          const std::string at = where + "other_sizes[" + std::to_string(k) + "].";
          if (!z.is_object())
            throw input_error(where + "other_sizes[" + std::to_string(k) + "] must be an object");
          reject_unknown_keys(z, {"rows", "F", "I", "W", "B"}, at);
          layer_size size;
          size.rows = json_integer(z.contains("rows") ? z["rows"] : nlohmann::json(), at + "rows", 1, limits::max_bytes);
          if (size.rows == t.microbatch_rows || (!l.other_sizes.empty() && size.rows <= l.other_sizes.back().rows))
            throw input_error(at + "rows must grow from one size to the next and differ from microbatch_rows (" +
                              std::to_string(t.microbatch_rows) + "), got " + std::to_string(size.rows));
          size.F = number(z, at, "F", us);
          size.I = number(z, at, "I", us);
          size.W = number(z, at, "W", us);
          size.B = z.contains("B") ? number(z, at, "B", us) : size.I + size.W;
          l.other_sizes.push_back(size);
        }
      }
      l.activation_bytes = bytes(e, where, "activation_bytes");
      l.output_bytes = bytes(e, where, "output_bytes");
      l.param_bytes = bytes(e, where, "param_bytes");
      t.layers.push_back(std::move(l));
    }
  }
  return t;
}

cost_table load_cost_file(const std::string& path) {
  return parse_cost_json(read_text_file(path, "cost file '" + path + "': cannot open it"), "cost file '" + path + "'");
}

namespace {
double median_in_place(std::vector<double>& v) {
  const std::size_t n = v.size(), mid = n / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  if (n % 2 == 1)
    return v[mid];
  const double upper = v[mid];
  return (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)) + upper) / 2;
}
} // namespace

cost_table median_profile(const std::vector<cost_table>& runs, const std::vector<std::string>& names) {
  if (runs.empty())
    throw input_error("median of profiles: no profile given");
  if (names.size() != runs.size())
    throw input_error("median of profiles: " + std::to_string(names.size()) + " names for " +
                      std::to_string(runs.size()) + " profiles");
  const cost_table& first = runs.front();
  // The same configuration: what a run does not time must agree, field by field.
  for (std::size_t k = 1; k < runs.size(); ++k) {
    const cost_table& t = runs[k];
    auto differs = [&](const std::string& field) {
      return input_error(names[k] + ": " + field + " differs from " + names[0] +
                         "'s (a median is taken over runs of one configuration)");
    };
    if (t.stages.size() != first.stages.size())
      throw differs("the number of stages (" + std::to_string(t.stages.size()) + ")");
    for (std::size_t s = 0; s < t.stages.size(); ++s) {
      const stage_cost &a = first.stages[s], &b = t.stages[s];
      if (a.activation_bytes != b.activation_bytes || a.weight_input_bytes != b.weight_input_bytes ||
          a.param_bytes != b.param_bytes || a.output_bytes != b.output_bytes)
        throw differs("stages[" + std::to_string(s) + "]'s bytes");
    }
    if (t.layers.size() != first.layers.size())
      throw differs("the number of layers (" + std::to_string(t.layers.size()) + ")");
    for (std::size_t i = 0; i < t.layers.size(); ++i) {
      const layer_cost &a = first.layers[i], &b = t.layers[i];
      const bool same_sizes = std::equal(a.other_sizes.begin(), a.other_sizes.end(), b.other_sizes.begin(),
                                         b.other_sizes.end(), [](const layer_size& x, const layer_size& y) { return x.rows == y.rows; });
      if (a.name != b.name || a.activation_bytes != b.activation_bytes || a.output_bytes != b.output_bytes ||
          a.param_bytes != b.param_bytes || !same_sizes)
        throw differs("layers[" + std::to_string(i) + "] ('" + b.name + "': its name, bytes or sizes)");
    }
    const bool same_links = std::equal(first.links.begin(), first.links.end(), t.links.begin(), t.links.end(),
                                       [](const link_cost& x, const link_cost& y) { return x.src == y.src && x.dst == y.dst; });
    if (!same_links)
      throw differs("the set of links");
    if (t.replica_link.has_value() != first.replica_link.has_value())
      throw differs("replica_link (given in one, not in the other)");
    if (t.replica_reduce_scatter_by_allreduce != first.replica_reduce_scatter_by_allreduce)
      throw differs("replica_reduce_scatter");
    if (t.stage_ranks != first.stage_ranks)
      throw differs("stage_ranks");
    if (t.stage_first_layers != first.stage_first_layers)
      throw differs("stage_first_layers");
    if (t.shared_cpus != first.shared_cpus)
      throw differs("shared_cpus");
    if (t.microbatch_rows != first.microbatch_rows)
      throw differs("microbatch_rows (" + std::to_string(t.microbatch_rows) + ")");
    if (t.noise.size() != first.noise.size())
      throw differs("the number of noise quantiles (" + std::to_string(t.noise.size()) + ")");
  }
  cost_table out = first;
  std::vector<double> values(runs.size());
  // Each time of `out` from the same field of every run: get(t) is that field in table t.
  auto median_of = [&](auto get) {
    for (std::size_t k = 0; k < runs.size(); ++k)
      values[k] = get(runs[k]);
    return median_in_place(values);
  };
  using stage_time = double stage_cost::*;
  using layer_time = double layer_cost::*;
  using size_time = double layer_size::*;
  for (std::size_t s = 0; s < out.stages.size(); ++s)
    for (const stage_time f : {&stage_cost::F, &stage_cost::I, &stage_cost::W, &stage_cost::B, &stage_cost::U})
      out.stages[s].*f = median_of([&](const cost_table& t) { return t.stages[s].*f; });
  for (std::size_t i = 0; i < out.layers.size(); ++i) {
    for (const layer_time f : {&layer_cost::F, &layer_cost::I, &layer_cost::W, &layer_cost::B, &layer_cost::U})
      out.layers[i].*f = median_of([&](const cost_table& t) { return t.layers[i].*f; });
    for (std::size_t z = 0; z < out.layers[i].other_sizes.size(); ++z)
      for (const size_time f : {&layer_size::F, &layer_size::I, &layer_size::W, &layer_size::B})
        out.layers[i].other_sizes[z].*f = median_of([&](const cost_table& t) { return t.layers[i].other_sizes[z].*f; });
  }
  for (std::size_t l = 0; l < out.links.size(); ++l)
    for (const auto f : {&link_cost::latency_us, &link_cost::bandwidth_gbps, &link_cost::probe_latency_us})
      out.links[l].*f = median_of([&](const cost_table& t) { return t.links[l].*f; });
  if (out.replica_link)
    for (const auto f : {&link_class::latency_us, &link_class::bandwidth_gbps})
      (*out.replica_link).*f = median_of([&](const cost_table& t) { return (*t.replica_link).*f; });
  for (const auto f : {&link_class::latency_us, &link_class::bandwidth_gbps})
    out.send_posting.*f = median_of([&](const cost_table& t) { return t.send_posting.*f; });
  for (const auto f : {&cost_table::received_input_cost::F, &cost_table::received_input_cost::B})
    out.received_input.*f = median_of([&](const cost_table& t) { return t.received_input.*f; });
  for (const auto f : {&cost_table::action_overhead_us, &cost_table::step_overhead_us, &cost_table::arrival_cost_us})
    out.*f = median_of([&](const cost_table& t) { return t.*f; });
  if (!out.noise.empty()) {
    double sum = 0;
    for (std::size_t q = 0; q < out.noise.size(); ++q)
      sum += out.noise[q] = median_of([&](const cost_table& t) { return t.noise[q]; });
    const double mean = sum / static_cast<double>(out.noise.size());
    if (mean > 0)
      for (double& x : out.noise)
        x /= mean;
  }
  return out;
}

loaded_profiles load_profiles(const std::vector<std::string>& paths) {
  if (paths.empty())
    throw input_error("no cost file given");
  loaded_profiles out;
  std::vector<std::string> names;
  for (const auto& p : paths) {
    out.runs.push_back(load_cost_file(p));
    names.push_back(profiles_named({p}));
  }
  out.median = out.runs.size() == 1 ? out.runs.front() : median_profile(out.runs, names);
  return out;
}

std::string profiles_named(const std::vector<std::string>& paths) {
  if (paths.size() == 1)
    return "cost file '" + paths.front() + "'";
  std::string out = "cost files ";
  for (std::size_t k = 0; k < paths.size(); ++k)
    out += (k ? ", '" : "'") + paths[k] + "'";
  return out + " (their median)";
}

std::string to_cost_json(const cost_table& t, std::string_view source) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& c : t.stages)
    stages.push_back({{"F", c.F}, {"I", c.I}, {"W", c.W}, {"B", c.B}, {"U", c.U},
                      {"activation_bytes", c.activation_bytes}, {"weight_input_bytes", c.weight_input_bytes},
                      {"output_bytes", c.output_bytes ? c.output_bytes : c.activation_bytes},
                      {"param_bytes", c.param_bytes}});
  nlohmann::json j{{"unit", "us"}, {"stages", stages}};
  if (!source.empty())
    j["source"] = std::string(source);
  if (t.action_overhead_us > 0)
    j["action_overhead_us"] = t.action_overhead_us;
  if (t.step_overhead_us > 0)
    j["step_overhead_us"] = t.step_overhead_us;
  if (t.arrival_cost_us > 0)
    j["arrival_cost_us"] = t.arrival_cost_us;
  if (!t.noise.empty())
    j["noise"] = t.noise;
  if (t.microbatch_rows > 0)
    j["microbatch_rows"] = t.microbatch_rows;
  if (!t.links.empty()) {
    auto& links = j["links"] = nlohmann::json::array();
    for (const auto& l : t.links) {
      nlohmann::json e{{"src", l.src}, {"dst", l.dst}, {"latency_us", l.latency_us}, {"bandwidth_gbps", l.bandwidth_gbps}};
      if (l.probe_latency_us > 0)
        e["probe_latency_us"] = l.probe_latency_us;
      links.push_back(std::move(e));
    }
  }
  auto link_class_json = [](const link_class& l) {
    return nlohmann::json{{"latency_us", l.latency_us}, {"bandwidth_gbps", l.bandwidth_gbps}};
  };
  if (t.posting_costs())
    j["send_posting"] = link_class_json(t.send_posting);
  if (t.received_input.F > 0 || t.received_input.B > 0)
    j["received_input_us"] = nlohmann::json{{"F", t.received_input.F}, {"B", t.received_input.B}};
  if (!t.shared_cpus.empty())
    j["shared_cpus"] = t.shared_cpus;
  if (!t.stage_ranks.empty())
    j["stage_ranks"] = t.stage_ranks;
  if (!t.stage_first_layers.empty())
    j["stage_first_layers"] = t.stage_first_layers;
  if (t.replica_link)
    j["replica_link"] = link_class_json(*t.replica_link);
  if (t.replica_reduce_scatter_by_allreduce)
    j["replica_reduce_scatter"] = "allreduce";
  if (!t.layers.empty()) {
    auto& layers = j["layers"] = nlohmann::json::array();
    for (const auto& l : t.layers) {
      nlohmann::json e{{"name", l.name}, {"F", l.F}, {"I", l.I}, {"W", l.W}, {"B", l.B},
                       {"activation_bytes", l.activation_bytes}, {"output_bytes", l.output_bytes},
                       {"param_bytes", l.param_bytes}};
      if (l.U > 0)
        e["U"] = l.U;
      if (!l.other_sizes.empty()) {
        auto& sizes = e["other_sizes"] = nlohmann::json::array();
        for (const auto& z : l.other_sizes)
          sizes.push_back({{"rows", z.rows}, {"F", z.F}, {"I", z.I}, {"W", z.W}, {"B", z.B}});
      }
      layers.push_back(std::move(e));
    }
  }
  return j.dump(2) + "\n";
}

void save_cost_file(const cost_table& t, const std::string& path, std::string_view source) {
  const std::string text = to_cost_json(t, source);
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

std::vector<layer_cost> layers_at_rows(const cost_table& t, std::int64_t rows) {
  if (t.microbatch_rows <= 0 || rows <= 0)
    throw input_error("layers_at_rows: needs the profile's microbatch_rows and a positive number of rows (got " +
                      std::to_string(t.microbatch_rows) + " and " + std::to_string(rows) + ")");
  const double ratio = static_cast<double>(rows) / static_cast<double>(t.microbatch_rows);
  std::vector<layer_cost> out = t.layers;
  for (auto& l : out) {
    // The measured sizes in order of rows; the segment whose line gives `rows`: the one around it, or
    // beyond the ends the end one.
    std::vector<layer_size> sizes{{.rows = t.microbatch_rows, .F = l.F, .I = l.I, .W = l.W, .B = l.B}};
    sizes.insert(sizes.end(), l.other_sizes.begin(), l.other_sizes.end());
    auto by_rows = [](const layer_size& a, const layer_size& b) { return a.rows < b.rows; };
    std::stable_sort(sizes.begin(), sizes.end(), by_rows); // a size given twice: the first counts
    sizes.erase(std::unique(sizes.begin(), sizes.end(), [](const layer_size& a, const layer_size& b) { return a.rows == b.rows; }),
                sizes.end());
    if (sizes.size() == 1) {
      l.F *= ratio, l.I *= ratio, l.W *= ratio, l.B *= ratio;
    } else {
      std::size_t k = 0; // the segment sizes[k], sizes[k + 1]
      while (k + 2 < sizes.size() && sizes[k + 1].rows < rows)
        ++k;
      const layer_size &a = sizes[k], &b = sizes[k + 1];
      const double along = static_cast<double>(rows - a.rows) / static_cast<double>(b.rows - a.rows);
      auto at = [&](double layer_size::*kind) { return std::max(0.0, a.*kind + (b.*kind - a.*kind) * along); };
      l.F = at(&layer_size::F), l.I = at(&layer_size::I), l.W = at(&layer_size::W), l.B = at(&layer_size::B);
    }
    l.other_sizes.clear(); // the times are now those at `rows`
    auto bytes = [&](std::uint64_t b) {
      const double v = static_cast<double>(b) * ratio;
      if (!(v < 0x1p63))
        throw input_error("layers_at_rows: layer '" + l.name + "' would hold more than 2^63 bytes at " +
                          std::to_string(rows) + " rows");
      return static_cast<std::uint64_t>(v);
    };
    l.activation_bytes = bytes(l.activation_bytes), l.output_bytes = bytes(l.output_bytes);
  }
  return out;
}

cost_table blend_profiles(const cost_table& a, const cost_table& b, const std::string& a_name, const std::string& b_name) {
  for (const auto& [t, name] : {std::pair{&a, &a_name}, std::pair{&b, &b_name}}) {
    if (t->microbatch_rows <= 0 || t->layers.empty())
      throw input_error(*name + ": blending two profiles needs each one's microbatch_rows and layers");
    t->validate(static_cast<int>(t->stages.size()), *name); // stage_ranks: one per stage
  }
  if (a.microbatch_rows == b.microbatch_rows)
    throw input_error(b_name + ": its microbatch_rows (" + std::to_string(b.microbatch_rows) + ") are " + a_name +
                      "'s: a second profile must come from a run of another micro-batch size");
  if (a.layers.size() != b.layers.size())
    throw input_error(b_name + ": " + std::to_string(b.layers.size()) + " layers, but " + a_name + " has " +
                      std::to_string(a.layers.size()) + ": not a profile of the same model");
  for (std::size_t i = 0; i < a.layers.size(); ++i)
    if (a.layers[i].name != b.layers[i].name)
      throw input_error(b_name + ": layers[" + std::to_string(i) + "] is '" + b.layers[i].name + "', but " + a_name +
                        "'s is '" + a.layers[i].name + "': not a profile of the same model");
  std::vector<std::int64_t> sizes{a.microbatch_rows, b.microbatch_rows};
  for (const cost_table* t : {&a, &b})
    for (const auto& l : t->layers)
      for (const auto& z : l.other_sizes)
        sizes.push_back(z.rows);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  if (static_cast<std::int64_t>(sizes.size()) > limits::max_layer_sizes + 1)
    throw input_error(b_name + ": with " + a_name + " the layers were timed at " + std::to_string(sizes.size()) +
                      " sizes, at most " + std::to_string(limits::max_layer_sizes + 1) + " can be kept");
  cost_table out = a;
  // The links as the two runs waited on them: each run's time at the mean bytes its boundaries carried on
  // the link (where its stages ran), a line through the two.
  int ranks = 0;
  for (const auto& l : a.links)
    ranks = std::max({ranks, l.src + 1, l.dst + 1});
  const auto carried = [ranks](const cost_table& t, int src, int dst) -> std::optional<std::uint64_t> {
    const auto rank_of = [&](int st) {
      return t.stage_ranks.empty() ? st % ranks : t.stage_ranks[static_cast<std::size_t>(st)];
    };
    std::uint64_t sum = 0, n = 0;
    for (int st = 0; st + 1 < static_cast<int>(t.stages.size()); ++st) {
      const int from = rank_of(st), to = rank_of(st + 1);
      if ((from == src && to == dst) || (to == src && from == dst)) // its output, or the gradient back
        sum += t.transfer_bytes(action_kind::send_f, st, no_microbatch), ++n;
    }
    if (n == 0)
      return std::nullopt;
    return (sum + n / 2) / n;
  };
  for (auto& l : out.links) {
    const link_cost* other = b.link(l.src, l.dst);
    const auto bytes_a = carried(a, l.src, l.dst), bytes_b = carried(b, l.src, l.dst);
    if (other == nullptr || !bytes_a || !bytes_b || *bytes_a == *bytes_b)
      continue;
    const auto time = [](const link_cost& x, std::uint64_t bytes) {
      return time_transfer(0, 0, bytes, link_class{.latency_us = x.latency_us, .bandwidth_gbps = x.bandwidth_gbps}).arrive;
    };
    const transfer_line line = fit_transfer_line({{static_cast<double>(*bytes_a), time(l, *bytes_a)},
                                                  {static_cast<double>(*bytes_b), time(*other, *bytes_b)}});
    if (line.us_per_byte > 0 && line.at_zero_us >= 0)
      l.latency_us = line.at_zero_us, l.bandwidth_gbps = 1e-3 / line.us_per_byte;
  }
  for (auto& l : out.layers)
    l.other_sizes.clear();
  const double from = static_cast<double>(a.microbatch_rows), span = static_cast<double>(b.microbatch_rows) - from;
  for (const std::int64_t rows : sizes) {
    const double w = std::clamp((static_cast<double>(rows) - from) / span, 0.0, 1.0); // 0 at a's size, 1 at b's
    const auto at_a = layers_at_rows(a, rows), at_b = layers_at_rows(b, rows);
    for (std::size_t i = 0; i < out.layers.size(); ++i) {
      auto blend = [&](double layer_cost::*kind) { return (1 - w) * (at_a[i].*kind) + w * (at_b[i].*kind); };
      const layer_size z{.rows = rows, .F = blend(&layer_cost::F), .I = blend(&layer_cost::I), .W = blend(&layer_cost::W),
                         .B = blend(&layer_cost::B)};
      layer_cost& l = out.layers[i];
      if (rows == a.microbatch_rows)
        l.F = z.F, l.I = z.I, l.W = z.W, l.B = z.B;
      else
        l.other_sizes.push_back(z);
    }
  }
  return out;
}

std::vector<stage_cost> group_layers(const std::vector<layer_cost>& layers, const std::vector<int>& boundaries) {
  const int L = static_cast<int>(layers.size());
  if (boundaries.empty() || boundaries.front() != 0)
    throw input_error("group_layers: the first stage must start at layer 0");
  std::vector<stage_cost> out;
  for (std::size_t k = 0; k < boundaries.size(); ++k) {
    const int begin = boundaries[k], end = k + 1 < boundaries.size() ? boundaries[k + 1] : L;
    if (begin >= end || end > L)
      throw input_error("group_layers: stage " + std::to_string(k) + " would hold layers " + std::to_string(begin) +
                        ".." + std::to_string(end - 1) + " of " + std::to_string(L));
    stage_cost c{.F = 0, .I = 0, .W = 0, .B = 0, .U = 0};
    for (int i = begin; i < end; ++i) {
      const auto& l = layers[static_cast<std::size_t>(i)];
      c.F += l.F, c.I += l.I, c.W += l.W, c.B += l.B, c.U += l.U;
      c.activation_bytes += l.activation_bytes;
      c.param_bytes += l.param_bytes;
    }
    c.weight_input_bytes = c.activation_bytes / 2;
    c.output_bytes = layers[static_cast<std::size_t>(end - 1)].output_bytes;
    if (begin == 0) // the model's input takes no gradient: W runs the whole backward, on every activation
      c.I = 0, c.W = c.B, c.weight_input_bytes = c.activation_bytes;
    out.push_back(c);
  }
  return out;
}

cost_table roofline_costs(const std::vector<roofline_stage>& stages, const device_spec& device) {
  if (!(device.peak_flops > 0))
    throw input_error("device_spec.peak_flops must be positive");
  if (!(device.memory_bandwidth > 0))
    throw input_error("device_spec.memory_bandwidth must be positive");
  cost_table t;
  for (std::size_t i = 0; i < stages.size(); ++i)
    t.stages.push_back(roofline_stage_cost(stages[i], device, "roofline stage " + std::to_string(i) + ": "));
  return t;
}

} // namespace pippy
