#pragma once
// What a cost file holds: per stage compute times and sizes, optionally per layer, per rank pair links
// and the runtime's per-action overhead. One type, one JSON form: `--profile` writes it, `pippy sim` and
// `pippy plan` read it. Plain values: copy freely; const methods are thread-safe.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pippy/core/action.hpp"
#include "pippy/core/topology.hpp"

namespace pippy {

// Times in microseconds, sizes in bytes, for one stage and one micro-batch.
struct stage_cost {
  double F = 1, I = 1, W = 1, B = 2, U = 0;
  std::uint64_t activation_bytes = 0;   // held from F until I/B
  std::uint64_t weight_input_bytes = 0; // part of the activations kept from I until W (the cost file and
                                        // pippy sim --activation-bytes default it to half the activations)
  std::uint64_t param_bytes = 0;        // parameters of the stage
  // Bytes of F's output, sent to the next stage (and its gradient sent back); 0 = activation_bytes, the
  // one size that --activation-bytes and older cost files give.
  std::uint64_t output_bytes = 0;
  friend bool operator==(const stage_cost&, const stage_cost&) = default;
};

// A layer's times measured alone on a micro-batch of another size.
struct layer_size {
  std::int64_t rows = 0;
  double F = 0, I = 0, W = 0, B = 0;
  friend bool operator==(const layer_size&, const layer_size&) = default;
};

// One module of the traced graph, measured alone (the planner regroups layers into other splits).
struct layer_cost {
  std::string name;
  double F = 0, I = 0, W = 0, B = 0;  // at the table's microbatch_rows
  double U = 0; // its optimizer step alone; 0 in every layer = not measured (the stages' U is then shared
                // among regrouped stages by parameter bytes)
  // The times at other micro-batch sizes, by rows ascending, none at microbatch_rows: a time at any size
  // is piecewise linear through these and the one above (layers_at_rows). Empty: in proportion to the rows.
  std::vector<layer_size> other_sizes;
  std::uint64_t activation_bytes = 0; // what its backward keeps (inputs of the layer)
  std::uint64_t output_bytes = 0;     // its output: what a split after it sends
  std::uint64_t param_bytes = 0;
  friend bool operator==(const layer_cost&, const layer_cost&) = default;
};

// A directed link between two ranks: a transfer of n bytes takes latency + n / bandwidth.
struct link_cost {
  int src = 0, dst = 0;
  double latency_us = 0;
  double bandwidth_gbps = 0; // gigabytes per second; 0 = unlimited
  // What the ping-pong probe measured with nothing else running, where the latency above comes from the
  // run's own waits (a profile); 0 = not given. Kept for the reader: the models use latency_us.
  double probe_latency_us = 0;
  friend bool operator==(const link_cost&, const link_cost&) = default;
};

// One class of links: a transfer takes latency + bytes / bandwidth; the link is busy (carries nothing
// else) for the bytes / bandwidth part, so two transfers on one directed link take turns.
struct link_class {
  double latency_us = 0;
  double bandwidth_gbps = 0; // gigabytes per second; 0 = unlimited
};

struct link_model {
  link_class intra_host;      // ranks on the same host
  link_class inter_host;      // ranks on different hosts
  int ranks_per_host = 0;     // 0 = every rank on one host; host of rank r = r / ranks_per_host
  bool blocking_send = false; // false: async (isend, overlaps compute); true: the sender waits for delivery
  static link_model uniform(double latency_us, double bandwidth_gbps) {
    return {.intra_host = {latency_us, bandwidth_gbps}, .inter_host = {latency_us, bandwidth_gbps}};
  }
  const link_class& between(int rank_a, int rank_b) const;
};

// A transfer posted at `posted` on a link free from `link_free`: it starts when both allow, occupies the
// link for bytes / bandwidth and arrives latency later. Inline: the flat evaluator calls it per transfer.
struct transfer_time {
  double start = 0, link_free = 0, arrive = 0;
};
inline transfer_time time_transfer(double posted, double link_free, std::uint64_t bytes, const link_class& link) {
  const double busy = link.bandwidth_gbps > 0 ? static_cast<double>(bytes) / (link.bandwidth_gbps * 1e3) : 0.0;
  const double start = std::max(posted, link_free);
  return transfer_time{.start = start, .link_free = start + busy, .arrive = start + busy + link.latency_us};
}

// Data parallelism (pp x dp): when a stage's gradients are all-reduced over its replicas. overlap: from
// the stage's last backward of the step (its last B or W) on, beside the rest of the pipeline; at_step:
// at its optimizer step. Either way U waits for it.
enum class grad_sync_mode : std::uint8_t { overlap, at_step };

// pp x dp as the simulator and the flat evaluator model it (core's mesh_collectives): `replicas` copies of
// the pipeline (global rank = replica x R + rank), all run; before each U the stage's param_bytes are
// all-reduced over them (allreduce_time on the link between ranks R apart), posted at the stage's last
// backward of the step (overlap) or at U (at_step), started by the last replica's post, one at a time
// per pipeline rank's group; U waits for it. With ZeRO-1 (zero1) that all-reduce is a reduce-scatter
// (or, for a backend that runs one as a whole all-reduce, that all-reduce: grad_sync_time), U updates
// 1/D of the parameters and then all-gathers them (mesh_collectives, whole_step_us), and each
// replica keeps 1/D of the optimizer state (per_replica).
struct data_parallel_model {
  int replicas = 1;
  grad_sync_mode sync = grad_sync_mode::overlap;
  bool zero1 = false;
  // Whether the optimizer state is sharded: ZeRO-1 over two or more replicas.
  bool sharded() const { return zero1 && replicas > 1; }
};
// Why ZeRO-1 is refused with fewer than 2 replicas, naming the option or field that sets them.
inline std::string zero1_needs_replicas(const std::string& replicas_option) {
  return "shards the optimizer state over the replicas: it needs " + replicas_option + " 2 or more";
}
// One pass around a ring of `replicas` ranks (a reduce-scatter or an all-gather of `bytes`, Gloo's and
// NCCL's ring): each link carries (D-1) / D of the bytes, in D-1 steps of one latency each. 0 for one
// replica.
inline double ring_pass_time(std::uint64_t bytes, int replicas, const link_class& link) {
  if (replicas <= 1 || bytes == 0) // the runtime posts no collective for a stage without parameters
    return 0.0;
  const double d = replicas;
  const double busy =
      link.bandwidth_gbps > 0 ? (d - 1) / d * static_cast<double>(bytes) / (link.bandwidth_gbps * 1e3) : 0.0;
  return busy + (d - 1) * link.latency_us;
}
// A ring all-reduce: a reduce-scatter, then an all-gather.
inline double allreduce_time(std::uint64_t bytes, int replicas, const link_class& link) {
  return 2.0 * ring_pass_time(bytes, replicas, link);
}
// What a stage's gradients cost on the link to its replicas before its U: the all-reduce, or with
// ZeRO-1 the reduce-scatter: one ring pass, or where the backend runs it as a whole all-reduce and
// keeps its slice (`reduce_scatter_by_allreduce`: c10d's Gloo), that all-reduce.
inline double grad_sync_time(std::uint64_t param_bytes, const data_parallel_model& dp, const link_class& link,
                             bool reduce_scatter_by_allreduce = false) {
  return dp.sharded() && !reduce_scatter_by_allreduce ? ring_pass_time(param_bytes, dp.replicas, link)
                                                      : allreduce_time(param_bytes, dp.replicas, link);
}
// The whole stage's step from a ZeRO-1 run's measured U (its 1/D, then the all-gather on a free link:
// mesh_collectives' U): what a profile of such a run records, so that the engines give the measured U back.
inline double whole_step_us(double measured_us, std::uint64_t param_bytes, int replicas, const link_class& link) {
  return std::max(0.0, measured_us - ring_pass_time(param_bytes, replicas, link)) * replicas;
}

// The link that explains one-way times measured at several sizes: latency + bytes / bandwidth fitted by
// least squares over (bytes, microseconds) points. A slope that is not positive (sizes too alike, noise)
// gives unlimited bandwidth; a negative intercept gives latency 0. Throws input_error without two
// distinct sizes.
link_class fit_link(const std::vector<std::pair<double, double>>& bytes_us);

struct memory_model {
  // Bytes per parameter byte a stage keeps all the time: weights, gradients and two Adam moments = 4.
  double state_factor = 4.0;
  std::uint64_t cap_bytes = 0; // per rank; 0 = unlimited
};
// What one replica keeps: with ZeRO-1, the weights and gradients whole (2 of state_factor) and the rest,
// the optimizer state, divided by the replicas.
inline memory_model per_replica(memory_model memory, const data_parallel_model& dp) {
  if (dp.sharded() && memory.state_factor > 2)
    memory.state_factor = 2 + (memory.state_factor - 2) / dp.replicas;
  return memory;
}

struct cost_table {
  std::vector<stage_cost> stages;
  std::vector<layer_cost> layers;  // empty unless profiled per layer
  std::vector<link_cost> links;    // measured pairs; a pair not listed uses the simulator's link model
  // The link the replicas' collectives run on (pp x dp), as one step of their ring: fitted from timed
  // all-reduces (fit_ring_link). None: the link model's between rank r and R + r.
  std::optional<link_class> replica_link;
  // How the replicas' backend reduce-scatters (ZeRO-1): one ring pass ("ring", NCCL's), or a whole
  // all-reduce of which each replica keeps its slice ("allreduce", c10d's Gloo): grad_sync_time.
  bool replica_reduce_scatter_by_allreduce = false;
  double action_overhead_us = 0;   // the runtime's own time per compute action, before the action starts
  double step_overhead_us = 0;     // the runtime's time on a rank between its last action of one step and its first of the next (traces' rank_step_gap_us)
  // What a transfer arriving on a rank takes from the compute action running there (core's shared_processor):
  // the transport's threads share the rank's cores. 0 = transfers are free for compute.
  double arrival_cost_us = 0;
  // What posting a send takes from its rank: the runtime writes a send into the transport from the
  // rank's own thread, so the rank's next action starts that much later (the transfer itself is timed
  // by the link). latency_us + bytes / bandwidth_gbps; {0, 0} = free.
  link_class send_posting;
  double send_posting_us(std::uint64_t bytes) const { return time_transfer(0, 0, bytes, send_posting).arrive; }
  bool posting_costs() const { return send_posting.latency_us > 0 || send_posting.bandwidth_gbps > 0; }
  // What a compute action takes beyond its stage's time when its input came from another rank (F's
  // activation, I's or B's gradient; not W's): the runtime's work on a received tensor, which layers timed
  // alone in one process do not show. GPT's stages on 2 processes, side by side: the same layers in 4
  // stages took 17-20% more than in 2. The engines add it (received_input_us); a profile fits it from its
  // stages, and keeps it out of their times. {0, 0}: none.
  struct received_input_cost {
    double F = 0, B = 0;
    bool operator==(const received_input_cost&) const = default;
  } received_input;
  // That extra for action `a` of a schedule of `shape`: received_input.F for an F whose stage's
  // predecessor is on another rank, .B for an I or B whose successor is; else 0.
  double received_input_us(const action& a, const pipeline_shape& shape) const;
  // What the engines charge compute action `a` of `replica` (pp x dp) in a schedule of `shape`: its
  // cost and a received input's.
  double engine_us(const action& a, const pipeline_shape& shape, int replica = 0) const {
    return (*this)(a, replica) + received_input_us(a, shape);
  }
  // Groups of ranks whose compute shares one CPU (`pippy run --bind-cores` with more ranks than CPUs:
  // core's cpu_share); the engines run each group's actions on one shared_processor. The compute times
  // are each action's work alone. Empty: every rank computes on a processor of its own.
  std::vector<std::vector<int>> shared_cpus;
  // The rank each stage ran on in the profiled run (its trace's), which tells which link each boundary's
  // transfers took there (blend_profiles). Empty: unknown, read as stage s on rank s mod R.
  std::vector<int> stage_ranks;
  // Where each profiled stage's layers begin, in `layers` (the first 0, ascending): what the profile
  // fitted the stages against its layers with. Empty: unknown.
  std::vector<int> stage_first_layers;
  // What is wrong with stage_first_layers as a split of `layers` into num_stages stages ("": nothing;
  // validate throws it, a profile then fits nothing).
  std::string stage_first_layers_problem(int num_stages) const;
  std::int64_t microbatch_rows = 0; // rows of the micro-batch the times were measured on (0 = unknown)
  double jitter = 0;       // each compute time scaled by (1 + jitter * u), u uniform in [-1, 1]
  std::uint64_t seed = 0;  // ... drawn from a hash of (seed, action): deterministic, order-free
  // Step-to-step noise as measured (traces' fit_step_noise): quantiles of an action's time over its
  // mean at probabilities (i + 0.5) / n, non-decreasing. Each compute time is scaled by a draw from
  // them, hashed from (seed, action) like the jitter; the expected step is the mean over seeds
  // (expected_step_us). Empty: no noise.
  std::vector<double> noise;
  // Size of micro-batch m relative to the one the costs describe (empty: all 1). Compute times and
  // activation bytes scale with it: an uneven last micro-batch is cheaper, its transfers smaller.
  std::vector<double> microbatch_scale;

  // Micro-batches of a batch of `rows` split into `microbatches` (core's chunk_sizes): the costs are
  // those of an average micro-batch (rows / microbatches rows). Throws input_error when rows < M.
  void scale_by_rows(std::int64_t rows, int microbatches);
  double scale(int microbatch) const {
    return microbatch >= 0 && static_cast<std::size_t>(microbatch) < microbatch_scale.size()
               ? microbatch_scale[static_cast<std::size_t>(microbatch)]
               : 1.0;
  }
  std::uint64_t activation_bytes(int stage, int microbatch) const {
    return scaled(stages.at(static_cast<std::size_t>(stage)).activation_bytes, microbatch);
  }
  std::uint64_t weight_input_bytes(int stage, int microbatch) const {
    return scaled(stages.at(static_cast<std::size_t>(stage)).weight_input_bytes, microbatch);
  }
  // Parameter bytes of a stage, what its replicas' collectives carry (0 for a stage past the table).
  std::uint64_t param_bytes(int stage) const {
    const auto s = static_cast<std::size_t>(stage);
    return s < stages.size() ? stages[s].param_bytes : 0;
  }
  // Bytes a transfer of `kind` (SEND_F/RECV_F or SEND_B/RECV_B) of `stage` carries: the boundary tensor
  // between the stage and its neighbour, forward or as a gradient.
  std::uint64_t transfer_bytes(action_kind kind, int stage, int microbatch) const;
  // The measured link from src to dst, if the table has one.
  const link_cost* link(int src, int dst) const;

  // Cost of a compute action (0 for communication). Throws input_error if the stage is out of range.
  // With jitter or noise each replica of a pp x dp mesh draws its own (replica 0 as a pipeline alone).
  double operator()(const action& a, int replica = 0) const;
  // Throws input_error naming the field when a value is negative or the size mismatches num_stages.
  void validate(int num_stages, const std::string& source) const;
  // Throws input_error naming links[i] when a link's ranks are not two different ranks below num_ranks,
  // shared_cpus[i] when a group has fewer than two ranks, or a rank not below mesh_ranks (pp x dp's
  // pipeline ranks x replicas: shared_cpus names the mesh's ranks; at least num_ranks) or in two groups,
  // and stage_ranks[s] when a rank is not below num_ranks.
  void validate_links(int num_ranks, const std::string& source, int mesh_ranks = 0) const;

private:
  std::uint64_t scaled(std::uint64_t bytes, int microbatch) const {
    return static_cast<std::uint64_t>(static_cast<double>(bytes) * scale(microbatch));
  }
};

// The memory rule, written once (the simulator's executor and the flat evaluator apply it): F holds its
// stage's activations from its start, where the cap is checked; at their ends I frees all but what W
// needs, W frees that, B frees all. In a forward-only run (inference) nothing waits for a gradient, so F
// frees its activations at its own end. Parameters and their state are held all the time.
struct memory_effect {
  std::uint64_t held_at_start = 0;  // bytes the action starts holding (F)
  std::uint64_t freed_at_end = 0;   // bytes released when it ends
  int activations_at_start = 0;     // micro-batches whose activations it starts holding: 1 for F
  int activations_freed_at_end = 0; // ... and stops holding at its end: B, W, forward-only F
  bool changes_at_end = false;      // the rank's memory changes when it ends: I, W, B, forward-only F
};
memory_effect memory_effect_of(const cost_table& costs, const action& a, bool forward_only);

// The quantile convention of cost_table::noise, written once for the profile that fits it and the draws
// that read it: the value at probability p in [0, 1] of a sorted, non-empty list, whose element i sits at
// (i + 0.5) / size, linear in between and the end values beyond.
double quantile_at(const std::vector<double>& sorted, double p);

// Bytes a rank holds all the time: its stages' parameters times the state factor.
std::uint64_t static_memory_bytes(const cost_table& costs, const memory_model& memory, const pipeline_shape& shape,
                                  int rank);

// The first action that did not fit under a memory cap.
struct out_of_memory {
  int rank = 0;
  action at;
  std::uint64_t needed_bytes = 0;
  std::uint64_t cap_bytes = 0;
  double t_us = 0;
  std::string message() const; // "out of memory on rank 0 at 0F3 (t=3 us): needs 400 bytes, cap 350 bytes"
  // Which of several to report: the earliest, on a tie the lowest rank (not whichever an engine happened
  // to process first).
  bool before(const out_of_memory& other) const {
    return t_us < other.t_us || (t_us == other.t_us && rank < other.rank);
  }
};

// One rank's memory under the rule above, action by action in the rank's order. Plain value, one
// thread; inline because the flat evaluator runs it per action.
class rank_memory {
public:
  rank_memory() = default;
  rank_memory(std::uint64_t static_bytes, std::uint64_t cap_bytes)
      : static_(static_bytes), cap_(cap_bytes), peak_bytes_(static_bytes) {}
  // The bytes the rank would hold once an action with effect `e` started.
  std::uint64_t needed(const memory_effect& e) const { return static_ + held_ + e.held_at_start; }
  // Starts the action; false, changing nothing, when it starts holding activations beyond the cap (the
  // check counts the parameters, so a cap below them fails at the rank's first F).
  bool start(const memory_effect& e) {
    if (e.activations_at_start == 0)
      return true;
    const std::uint64_t need = needed(e);
    if (cap_ > 0 && need > cap_)
      return false;
    held_ += e.held_at_start;
    activations_ += e.activations_at_start;
    peak_bytes_ = std::max(peak_bytes_, need);
    peak_activations_ = std::max(peak_activations_, activations_);
    return true;
  }
  void end(const memory_effect& e) {
    held_ -= e.freed_at_end;
    activations_ -= e.activations_freed_at_end;
    peak_bytes_ = std::max(peak_bytes_, bytes());
  }
  std::uint64_t bytes() const { return static_ + held_; }
  std::uint64_t cap_bytes() const { return cap_; }
  std::uint64_t peak_bytes() const { return peak_bytes_; }
  int peak_activations() const { return peak_activations_; }

private:
  std::uint64_t static_ = 0, cap_ = 0, held_ = 0, peak_bytes_ = 0;
  int activations_ = 0, peak_activations_ = 0;
};

// The link between rank r's replicas: the table's measured one, else the link model's between ranks r
// and R + r (the next replica; across hosts when the link model puts them there).
inline link_class replica_link(const cost_table& costs, const link_model& links, int rank, int num_ranks) {
  return costs.replica_link ? *costs.replica_link : links.between(rank, num_ranks + rank);
}
// The ring link that explains all-reduces of `replicas` ranks timed at several sizes (bytes, microseconds):
// allreduce_time's 2 (D-1) steps, each a latency and bytes / D over the bandwidth. Throws as fit_link.
link_class fit_ring_link(const std::vector<std::pair<double, double>>& allreduce_bytes_us, int replicas);

// The link a transfer from src to dst takes: the table's measured pair, else the model's class.
// In a pp x dp mesh, ranks src and dst of the replica whose rank 0 is mesh rank mesh_base: the table's
// links are the pipeline's (every replica's), the link model's hosts hold mesh ranks.
link_class link_between(const cost_table& costs, const link_model& links, int src, int dst, int mesh_base = 0);

// Throws input_error naming the field ("costs: stages[2].W", "links.inter_host.latency_us",
// "memory.state_factor") when the models do not fit a schedule of this shape or hold impossible values.
// The simulator and the flat evaluator both check their inputs so.
// With replicas > 1 (pp x dp) shared_cpus may name every rank of the mesh.
void validate_models(const pipeline_shape& shape, const cost_table& costs, const link_model& links,
                     const memory_model& memory, int replicas = 1);

// The same costs for every stage.
cost_table uniform_costs(int num_stages, const stage_cost& c);

// "F=1,B=2,I=1,W=1,U=0" (--cost). Missing B = I + W; missing I and W = B / 2; missing F = 1.
// Throws input_error naming the field ("--cost: ...").
stage_cost parse_cost_spec(std::string_view spec);

// {"stages":[{"F":..,"I":..,"W":..,"B":..,"U":..,"activation_bytes":..,"weight_input_bytes":..,
//   "output_bytes":..,"param_bytes":..}, ...], "layers":[{"name":..,"F":..,...}], "links":[{"src":..,
//   "dst":..,"latency_us":..,"bandwidth_gbps":..}], "action_overhead_us":..}, with the same defaults per
// stage. Throws input_error naming the source and field ("stages[2].F").
cost_table parse_cost_json(std::string_view text, const std::string& source);
cost_table load_cost_file(const std::string& path);
// Profiles of one configuration, its run repeated: every time is the median of the runs' (the mean of the
// middle two for an even count), so that one run of a machine whose speed drifts does not decide a plan
// (on the 2-core VM, a GPT stage's time moved by 20-50% between runs of one command). Everything else must
// be the same in every run: the stages' and layers' bytes, the layers' names and sizes, the links' ranks,
// replica_link given or not, replica_reduce_scatter, stage_ranks, shared_cpus, microbatch_rows and the
// noise's length. The noise is taken quantile by quantile (the median keeps them non-decreasing) and
// scaled back to a mean of 1.
// Throws input_error naming the run (names[i]) and the field that differs, or when runs is empty or
// names is not one per run.
cost_table median_profile(const std::vector<cost_table>& runs, const std::vector<std::string>& names);
// load_cost_file of each path (runs, in order), and with more than one their median_profile (else the one
// run). Throws input_error when paths is empty.
struct loaded_profiles {
  std::vector<cost_table> runs;
  cost_table median;
};
loaded_profiles load_profiles(const std::vector<std::string>& paths);
// How messages name those paths: "cost file 'a'", or "cost files 'a', 'b' (their median)".
std::string profiles_named(const std::vector<std::string>& paths);
// `source` ("measured", "roofline", ...) is recorded in the file for the reader.
std::string to_cost_json(const cost_table& t, std::string_view source = {});
// Writes path.tmp then renames. Throws input_error when the file cannot be written.
void save_cost_file(const cost_table& t, const std::string& path, std::string_view source = {});

// The layers' costs at another micro-batch size: each time piecewise linear in the rows through the
// layer's measured sizes (the table's microbatch_rows and other_sizes; beyond the ends, the end segment's
// line; never below 0), or in proportion to the rows where only one size was measured; bytes in
// proportion. Throws input_error unless t.microbatch_rows and rows are positive.
std::vector<layer_cost> layers_at_rows(const cost_table& t, std::int64_t rows);

// Two profiles of one model whose runs had micro-batches of two sizes. Each run's layers are scaled to
// what that run's stages took in the pipeline, and that extra time is not in proportion to the rows
// (MyNetwork: a plan of 128-row micro-batches predicted 7-15% too slow from a 16-row profile), so one
// size cannot tell how it grows. The result is `a` with each layer's times at every size either profile
// timed blended in rows: `a`'s own (layers_at_rows) at a.microbatch_rows and below it, `b`'s at
// b.microbatch_rows and beyond, linear in between. A link both measured takes the latency and bandwidth
// of the line through the two runs' times at the mean bytes their boundaries carried on it (each run's
// stages where its stage_ranks put them, else stage s on rank s mod R), where that line has a positive
// slope and latency: each run's latency came from
// its own waits, at its own sizes. Everything else stays `a`'s. Throws input_error, naming
// `a_name` or `b_name`, when a profile lacks microbatch_rows or layers or is invalid (validate), the sizes
// are equal, the layers differ in number or names, or the sizes together exceed limits::max_layer_sizes + 1.
cost_table blend_profiles(const cost_table& a, const cost_table& b, const std::string& a_name, const std::string& b_name);

// Stage costs of a split of t.layers into contiguous groups: boundaries[k] is the first layer of stage k
// (boundaries[0] = 0). Times and held bytes add up; a stage sends its last layer's output. U stays 0 (the
// planner shares the profile's optimizer steps among the stages by parameter bytes). The first stage takes
// the model's input, which takes no gradient (runtime's stage_executor asks for none), so it computes no
// input gradient at all and its whole backward runs in W: I = 0 and W = B, the layers' B summed (GPT's
// first stage in a zero-bubble run: I 1 us, W 1954 against B 1955 us; its layers' I summed to 662), on
// all of its activations (weight_input_bytes = activation_bytes; the other stages' W keeps half).
std::vector<stage_cost> group_layers(const std::vector<layer_cost>& layers, const std::vector<int>& boundaries);

// Roofline: time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth) per action.
struct roofline_stage {
  double forward_flops = 0, forward_bytes = 0; // per micro-batch
  double backward_factor = 2;                  // B = factor * F, split evenly into I and W
  std::uint64_t activation_bytes = 0, param_bytes = 0;
};
struct device_spec {
  double peak_flops = 100e12;     // FLOP/s
  double memory_bandwidth = 2e12; // bytes/s
};
// Throws input_error unless the device's rates are positive and each stage's forward_flops, forward_bytes
// and backward_factor are finite and non-negative (naming the stage and field).
cost_table roofline_costs(const std::vector<roofline_stage>& stages, const device_spec& device);

} // namespace pippy
