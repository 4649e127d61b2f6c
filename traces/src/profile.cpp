#include "pippy/traces/profile.hpp"

#include <algorithm>

#include "pippy/core/error.hpp"
#include "pippy/traces/metrics.hpp"

namespace pippy {

cost_table measure_stage_costs(const trace& t, int num_stages, const profile_context& context) {
  // The compute times, their noise and the arrivals' cost from each action's work alone; the waits,
  // gaps and sends from the trace as it ran.
  const auto per_step = step_metrics(t, context.steps); // what the overhead and the waits are read from
  const double overhead_us = action_overhead_us(per_step, t, context.shared_cpus);
  const trace alone = context.shared_cpus.empty() ? trace{} : work_alone(t, context.shared_cpus, overhead_us);
  const trace& compute = context.shared_cpus.empty() ? t : alone;
  const auto& activation_bytes = context.activation_bytes;
  const auto& param_bytes = context.param_bytes;
  struct acc {
    double sum[5] = {0, 0, 0, 0, 0};
    int n[5] = {0, 0, 0, 0, 0};
  };
  std::vector<acc> a(static_cast<std::size_t>(num_stages));
  for (const auto& e : compute.events) {
    if (!is_compute(e.act.kind) || e.act.stage < 0 || e.act.stage >= num_stages)
      continue;
    const auto k = static_cast<std::size_t>(e.act.kind); // compute kinds are 0..4 in action_kind
    a[static_cast<std::size_t>(e.act.stage)].sum[k] += e.duration_us();
    a[static_cast<std::size_t>(e.act.stage)].n[k] += 1;
  }
  cost_table out;
  // Receives that land inside an action lengthen it; the simulator adds that per arrival, so the table
  // holds each kind's time without them: its mean less the mean arrivals' cost.
  const arrival_fit arrivals = fit_arrival_cost(compute, num_stages);
  out.arrival_cost_us = context.arrival_cost_us.value_or(arrivals.cost_us);
  for (int s = 0; s < num_stages; ++s) {
    const auto& x = a[static_cast<std::size_t>(s)];
    auto mean = [&](action_kind k) {
      const auto i = static_cast<std::size_t>(k);
      return x.n[i] ? x.sum[i] / x.n[i] - out.arrival_cost_us * arrivals.mean_arrivals[static_cast<std::size_t>(s)][i]
                    : -1.0;
    };
    stage_cost c;
    c.F = std::max(0.0, mean(action_kind::forward));
    double i = mean(action_kind::backward_input), w = mean(action_kind::backward_weight),
           b = mean(action_kind::full_backward);
    if (b < 0 && i >= 0 && w >= 0)
      b = i + w;
    if (i < 0 && w < 0 && b >= 0)
      i = w = b / 2;
    c.I = std::max(0.0, i);
    c.W = std::max(0.0, w);
    c.B = std::max(0.0, b);
    c.U = std::max(0.0, mean(action_kind::optimizer_step));
    if (auto it = activation_bytes.find(s); it != activation_bytes.end())
      c.activation_bytes = c.output_bytes = it->second;
    c.weight_input_bytes = c.activation_bytes / 2;
    if (auto it = param_bytes.find(s); it != param_bytes.end())
      c.param_bytes = it->second;
    if (context.data_parallel.sharded())
      c.U = whole_step_us(c.U, c.param_bytes, context.data_parallel.replicas,
                          context.replica_link.value_or(link_class{}));
    out.stages.push_back(c);
  }
  out.action_overhead_us = overhead_us;
  // A send's posting holds its rank (the runtime writes it from the rank's own thread). Its level comes
  // from the run's sends, its bandwidth from the probe's sizes, which the run does not vary.
  {
    const link_class probe = context.send_posting.value_or(link_class{});
    std::vector<double> level;
    for (const auto& e : t.events)
      if (is_send(e.act.kind))
        level.push_back(e.duration_us() - time_transfer(0, 0, e.bytes, link_class{.bandwidth_gbps = probe.bandwidth_gbps}).arrive);
    out.send_posting = level.empty() ? probe
                                     : link_class{.latency_us = std::max(0.0, median_of(std::move(level))),
                                                  .bandwidth_gbps = probe.bandwidth_gbps};
  }
  out.step_overhead_us = std::max(0.0, rank_step_gap_us(t, context.steps));
  // The same action is not equally long every step; a pipeline waits for its slowest, so a step with
  // noisy actions is longer than one with their means: the simulator draws from this to predict it.
  out.noise = fit_step_noise(compute, context.steps);
  out.shared_cpus = context.shared_cpus;
  // pp x dp: the trace holds every replica (trace::replicas); the table's ranks are a replica's.
  const int replica_ranks = t.replica_ranks();
  auto in_replica = [&](int rank) { return replica_ranks > 0 ? rank % replica_ranks : rank; };
  out.stage_ranks.assign(static_cast<std::size_t>(num_stages), -1);
  for (const auto& e : t.events)
    if (is_compute(e.act.kind) && e.act.stage >= 0 && e.act.stage < num_stages)
      out.stage_ranks[static_cast<std::size_t>(e.act.stage)] = in_replica(e.rank);
  if (std::count(out.stage_ranks.begin(), out.stage_ranks.end(), -1) > 0)
    out.stage_ranks.clear(); // a stage that never ran: where it sat is unknown
  out.links = context.links;
  out.replica_link = context.replica_link;
  out.replica_reduce_scatter_by_allreduce = context.replica_reduce_scatter_by_allreduce;
  // The probe times each link with nothing else running. In the pipeline the transport threads share
  // the ranks' cores with compute, and the waits for a transfer are longer (MyNetwork on 2 processes:
  // 3x the probe's latency). A link the run waited on takes the latency that gives back the run's median
  // wait, as the simulator adds it up: wait = latency + bytes / bandwidth + the per-action overhead. A
  // link waited on fewer than 3 times takes the median of every link's waits: a schedule that rarely
  // waits (ZB-H2) may wait on a link once, and a stall of the sender then made that link 12-30x slower.
  // Its bandwidth stays the probe's, fitted over sizes the run does not vary.
  {
    constexpr std::size_t enough_waits = 3;
    const auto waits = transfer_waits(per_step);
    std::vector<std::vector<double>> latencies(out.links.size()); // per link: wait less the time on the wire
    std::vector<double> pooled;
    for (std::size_t i = 0; i < out.links.size(); ++i) {
      const link_cost& l = out.links[i];
      for (const auto& w : waits) {
        if (in_replica(w.src) != l.src || in_replica(w.dst) != l.dst || w.producer.stage < 0 || w.producer.stage >= num_stages)
          continue;
        const auto kind = w.producer.kind == action_kind::forward ? action_kind::send_f : action_kind::send_b;
        if (kind == action_kind::send_b && w.producer.stage == 0)
          continue;
        const auto bytes = out.transfer_bytes(kind, w.producer.stage, no_microbatch);
        const double on_the_wire = time_transfer(0, 0, bytes, link_class{.bandwidth_gbps = l.bandwidth_gbps}).arrive;
        latencies[i].push_back(w.wait_us - on_the_wire);
        pooled.push_back(w.wait_us - on_the_wire);
      }
    }
    for (std::size_t i = 0; i < out.links.size(); ++i) {
      auto& own = latencies[i];
      if (own.empty())
        continue; // never waited on: the probe's
      link_cost& l = out.links[i];
      l.probe_latency_us = l.latency_us;
      const double wait = median_of(own.size() < enough_waits && pooled.size() >= enough_waits ? pooled : std::move(own));
      l.latency_us = std::max(0.0, wait - out.action_overhead_us);
    }
  }
  out.layers = context.layers;
  // The layers were timed alone in one process, the stages beside the other ranks: each kind's layer times
  // (at every size they were timed at) are scaled by the stages' measured total over the layers' total
  // at the run's size (or by the fit below), and so is U, so that layers regrouped
  // into the run's own split add up to what the run measured. A kind the run did not measure (I and W of
  // a schedule with full backwards, B of a zero-bubble one) takes the factor of what it makes up (B), or
  // of its parts (I + W), keeping the layers' own split between I and W. I and W measured apart share
  // the factor of their sum too: the first stage runs its layers' input gradients inside its W (the
  // model's input takes none: core's group_layers), so the stages' I and W totals split the backward
  // otherwise than the layers' do.
  auto measured_everywhere = [&](action_kind k) {
    return std::all_of(a.begin(), a.end(), [&](const acc& x) { return x.n[static_cast<std::size_t>(k)] > 0; });
  };
  auto total = [](const auto& items, auto... fields) {
    double sum = 0;
    for (const auto& x : items)
      sum += (0.0 + ... + (x.*fields));
    return sum;
  };
  auto ratio = [](double stages, double layers) { return stages > 0 && layers > 0 ? stages / layers : 1.0; };
  const bool have_b = measured_everywhere(action_kind::full_backward),
             have_iw = measured_everywhere(action_kind::backward_input) && measured_everywhere(action_kind::backward_weight);
  // With the run's split in the layers and the rank of each stage, each direction's stages are fitted as
  // k x their layers + c where their input came from another rank (least squares): c is what such an
  // action takes beyond its layers (cost_table::received_input, which the engines add back), k scales the
  // layers. The forward on F, the backward on B (or I + W), whose received gradient the engines charge
  // to B and I. A fit with c or k not above 0, or stages that all received or none, keeps the totals.
  out.stage_first_layers = context.stage_first_layers;
  const auto S = static_cast<std::size_t>(num_stages);
  const auto& first = out.stage_first_layers;
  const bool split_known = S > 0 && !out.layers.empty() && out.stage_ranks.size() == S &&
                           out.stage_first_layers_problem(num_stages).empty();
  struct line {
    double k = 0, c = 0;
    bool fitted = false;
  };
  auto fit = [&](auto stage_time, auto layer_time, auto received) {
    if (!split_known)
      return line{};
    double sxx = 0, sxz = 0, sz = 0, sxy = 0, szy = 0;
    for (std::size_t st = 0; st < S; ++st) {
      const auto end = st + 1 < S ? static_cast<std::size_t>(first[st + 1]) : out.layers.size();
      double x = 0;
      for (auto l = static_cast<std::size_t>(first[st]); l < end; ++l)
        x += layer_time(out.layers[l]);
      const double y = stage_time(out.stages[st]), z = received(st) ? 1.0 : 0.0;
      sxx += x * x, sxz += x * z, sz += z, sxy += x * y, szy += z * y;
    }
    const double det = sxx * sz - sxz * sxz;
    if (!(det > 1e-9 * sxx * std::max(sz, 1.0)))
      return line{};
    const line l{.k = (sxy * sz - sxz * szy) / det, .c = (sxx * szy - sxz * sxy) / det, .fitted = true};
    return l.k > 0 && l.c > 0 ? l : line{};
  };
  auto received_forward = [&](std::size_t st) { return st > 0 && out.stage_ranks[st - 1] != out.stage_ranks[st]; };
  auto received_gradient = [&](std::size_t st) { return st + 1 < S && out.stage_ranks[st + 1] != out.stage_ranks[st]; };
  const line forward = fit([](const stage_cost& x) { return x.F; }, [](const layer_cost& x) { return x.F; }, received_forward);
  const line backward = fit([&](const stage_cost& x) { return have_b || !have_iw ? x.B : x.I + x.W; },
                            [&](const layer_cost& x) { return have_b || !have_iw ? x.B : x.I + x.W; }, received_gradient);
  out.received_input = {.F = forward.c, .B = backward.c};
  for (std::size_t st = 0; st < S; ++st) {
    stage_cost& x = out.stages[st];
    if (received_forward(st))
      x.F = std::max(0.0, x.F - forward.c);
    if (!received_gradient(st) || backward.c == 0)
      continue;
    const auto& n = a[st].n;
    const bool b_measured = n[static_cast<std::size_t>(action_kind::full_backward)] > 0,
               i_measured = n[static_cast<std::size_t>(action_kind::backward_input)] > 0;
    if (b_measured)
      x.B = std::max(0.0, x.B - backward.c);
    if (i_measured)
      x.I = std::max(0.0, x.I - backward.c);
    if (!b_measured && i_measured) // derived, as above: B = I + W
      x.B = x.I + x.W;
    if (b_measured && !i_measured) // I = W = B / 2
      x.I = x.W = x.B / 2;
  }
  const double f_F = forward.fitted ? forward.k : ratio(total(out.stages, &stage_cost::F), total(out.layers, &layer_cost::F));
  const double f_IW = ratio(total(out.stages, &stage_cost::I, &stage_cost::W), total(out.layers, &layer_cost::I, &layer_cost::W));
  const double f_B = backward.fitted ? backward.k
                     : have_b || !have_iw ? ratio(total(out.stages, &stage_cost::B), total(out.layers, &layer_cost::B))
                                          : f_IW;
  const double f_I = backward.fitted ? backward.k : have_iw ? f_IW : f_B, f_W = f_I;
  const double f_U = ratio(total(out.stages, &stage_cost::U), total(out.layers, &layer_cost::U));
  for (auto& l : out.layers) {
    l.F *= f_F, l.I *= f_I, l.W *= f_W, l.B *= f_B, l.U *= f_U;
    for (auto& z : l.other_sizes)
      z.F *= f_F, z.I *= f_I, z.W *= f_W, z.B *= f_B;
  }
  out.microbatch_rows = context.microbatch_rows;
  return out;
}

cost_table profile_again(const trace& whole, const cost_table& run_profile, const data_parallel_model& data_parallel) {
  const int num_stages = static_cast<int>(run_profile.stages.size());
  for (const auto& e : whole.events)
    if (is_compute(e.act.kind) && (e.act.stage < 0 || e.act.stage >= num_stages))
      throw input_error("the trace has " + to_string(e.act) + " on rank " + std::to_string(e.rank) +
                        ", a stage past the cost file's " + std::to_string(num_stages) + ": not the run that wrote it");
  profile_context c;
  for (int s = 0; s < num_stages; ++s) {
    const stage_cost& st = run_profile.stages[static_cast<std::size_t>(s)];
    c.activation_bytes[s] = st.activation_bytes;
    c.param_bytes[s] = st.param_bytes;
  }
  for (link_cost l : run_profile.links) { // the probe's, before the run's waits refitted their latency
    if (l.probe_latency_us > 0) // 0: never waited on, the latency is the probe's
      l.latency_us = l.probe_latency_us;
    l.probe_latency_us = 0;
    c.links.push_back(l);
  }
  c.send_posting = run_profile.send_posting;
  c.replica_link = run_profile.replica_link;
  c.replica_reduce_scatter_by_allreduce = run_profile.replica_reduce_scatter_by_allreduce;
  c.arrival_cost_us = run_profile.arrival_cost_us;
  c.data_parallel = data_parallel;
  c.shared_cpus = run_profile.shared_cpus;
  c.layers = run_profile.layers;
  c.stage_first_layers = run_profile.stage_first_layers;
  c.microbatch_rows = run_profile.microbatch_rows;
  const int steps = steps_in(whole);
  c.steps = std::max(1, steps - 1);
  return measure_stage_costs(steps_after_first(whole, steps), num_stages, c);
}

measured_summary summarize(const trace& t, int steps) {
  if (steps < 1)
    return {};
  const auto m = compute_metrics(t);
  return measured_summary{.step_us = m.step_time_us / steps, .bubble_fraction = m.bubble_fraction};
}

} // namespace pippy
