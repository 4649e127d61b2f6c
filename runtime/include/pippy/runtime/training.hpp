#pragma once
// The training loop of the example programs (mynetwork, gpt): one schedule, this process's ranks, the
// actors or the plain engine, measured traces gathered on rank 0. Prints `step N loss X` on the rank
// owning the loss and `measured step_us X bubble Y` where the trace is gathered.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pippy/compiler/stage_module.hpp"
#include "pippy/core/cost_table.hpp" // grad_sync_mode
#include "pippy/core/schedule.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/traces/profile.hpp"
#include "pippy/runtime/stage_executor.hpp"
#include "pippy/runtime/tied_weights.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy {

// What runs the steps: the stage actors shared with the simulator, or the plain loop (pipeline_engine).
enum class runtime_kind : std::uint8_t { actors, engine };

struct training_job {
  std::string schedule = "1f1b";
  int microbatches = 6;
  int steps = 5;
  int stages_per_rank = 0;     // 0: the schedule's default
  runtime_kind runtime = runtime_kind::actors;
  int in_process = 0;          // > 0: run that many ranks in this process (no c10d)
  bool bind_cores = false;     // this rank binds itself to its share of the host's CPUs (bind_to_local_share)
  int data_parallel = 1;       // D replicas of the pipeline: WORLD_SIZE = R x D, gradients averaged before U
  grad_sync_mode grad_sync = grad_sync_mode::overlap;
  bool zero1 = false;          // with data_parallel > 1: ZeRO-1, optimizer state sharded over the replicas
  double timeout_s = 60;       // c10d timeout: a lost peer is reported by then
  std::string trace_file;      // Chrome trace of every step (rank 0)
  std::string step_trace_file; // Chrome trace of the last step only (to put beside a simulated step)
  std::string profile_file;    // measured per-stage costs (simulator cost file)
  std::string live;            // PORT or FILE.jsonl: every rank's events as they happen (live_feed.hpp)
  int fail_rank = -1, fail_step = -1; // fault injection: that rank sends itself fail_signal at that step
                                      // (first attempt only: a restarted job runs through)
  int fail_signal = 9;                // SIGKILL (dies) or SIGSTOP (hangs: peers must time out)
  std::string export_dir;             // init, data and final parameters for a peer (run_export.hpp)
  // Agreement and liveness of a multi-process job (job_guard.hpp): the example's own settings (seed, batch,
  // model options...), compared between ranks before the first step with the runtime's own; and how long a
  // rank may miss its heartbeat before it is named (0: no heartbeat, only the c10d timeout).
  std::vector<std::pair<std::string, std::string>> settings;
  double heartbeat_s = 10;
  // Checkpoints (checkpoint.hpp): every `checkpoint_every` steps into checkpoint_dir, the newest
  // `checkpoint_keep` kept. `resume` (or a launcher's restart) continues from the newest complete one.
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int checkpoint_keep = 3;
  bool resume = false;
  bool time_steps = false;            // a barrier before each step, then print `step_ms X` (the median of the
                                      // slowest rank's wall time per step, the first step left out)
  // Inference: the schedule's forwards only (forward_only()), no autograd, no loss, no optimizer step;
  // each step's outputs, joined over micro-batches, go to on_outputs on the process of the last stage.
  bool forward_only = false;
  std::function<void(int step, const std::vector<torch::Tensor>& outputs)> on_outputs;

  // The model, split for the schedule: all num_stages stage modules, built identically on every rank
  // (a process keeps those of its ranks).
  std::function<std::vector<std::shared_ptr<stage_module>>(const pippy::schedule&)> make_stages;
  // The finest split make_stages accepts (the model's layers, one per stage); 0 = none. With a profile,
  // each layer is measured alone (measure_layers) so that a planner can regroup them.
  int num_layers = 0;
  // Where each stage of a split into num_stages begins, in those layers (the first 0); empty function:
  // unknown. A profile records it (cost_table::stage_first_layers).
  std::function<std::vector<int>(int num_stages)> stage_first_layers;
  // Replicated tied weights of those stages (asked after make_stages; the name is the parameter's name
  // in each holder's named_parameters()). Their gradients are summed over the holders before U.
  std::function<std::vector<tied_group>()> tied_groups;
  std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)> make_optimizer;
  loss_function loss;
  // The whole batch of a step: stage 0's inputs and the last stage's target.
  std::function<std::pair<std::vector<torch::Tensor>, torch::Tensor>(int step)> batch;
  // For export_dir's config.json: the model, its optimizer settings and its split into num_stages, as a
  // JSON object's text ({"model": ..., "lr": ..., ...}).
  std::function<std::string(int num_stages)> describe_model;
};

// Per-layer costs: the model split into its job.num_layers finest stages, run in this process on the
// first micro-batch of step 0 (of the first replica's slice): F through every layer, then I and W back
// through them, then F and B, then each layer's optimizer step (U, job.make_optimizer over its
// parameters), `repeats` times after one to warm up (at least 3, then only while a size's rounds have
// taken under a second); each time is the fastest. The same on the micro-batches
// of other counts (halving the run's down to 1, and 2x and 4x it) gives the times at other sizes (a
// planner's other micro-batches, layer_cost::other_sizes); layers traced at a fixed shape are made again
// (make_stages with that count) for them. A layer's activation and output bytes are the bytes of its
// output on the micro-batch (what the runtime holds for its backward and what a split after it sends);
// its parameter bytes are its own.
std::vector<layer_cost> measure_layers(const training_job& job, int repeats = 15);

// The first stage's inputs of one micro-batch as the runtime cuts them from a global batch: this
// replica's slice (--dp), then the first of `microbatches` (the schedule's). A graph traced with fixed
// shapes must be traced on it. Throws input_error when the batch does not split into job.data_parallel
// equal slices.
std::vector<torch::Tensor> replica_slice(const training_job& job, const std::vector<torch::Tensor>& global, int replica);
std::vector<torch::Tensor> traced_microbatch(const training_job& job, const std::vector<torch::Tensor>& global_inputs,
                                             int microbatches);

// Throws input_error for bad options, peer_error when a peer is lost.
int train_pipelined(const training_job& job, const dist_env& env);

// Writes the trace files and profile of a measured trace (times shifted to start at 0) and prints its
// steady-state summary (steps after the first).
void report_measured(const training_job& job, trace t, int num_stages, const profile_context& context);

// The rest of an example's main() once its options are read: sets libtorch's intra-op `threads`, then
// calls `unsplit` with WORLD_SIZE=1 (and no in_process), else train_pipelined. An error is printed as
// `error: ...`; the exit status is 2 for an input_error, else 1, or 3 for a lost peer (the last two
// exit at once: c10d objects may block in their destructors once a peer is gone).
int run_example(const training_job& job, int threads, const std::function<int()>& unsplit);

void print_loss(int step, double loss);

// An example's unsplit run (WORLD_SIZE=1), measured as a one-rank pipeline: each step's F, B and U are
// recorded, and report() prints the same `measured step_us` line and writes the same files as a pipelined run.
class unsplit_run {
public:
  // One training step: loss = forward_loss(), its backward, the optimizer's step and zero_grad; prints
  // `step K loss X` and returns the loss.
  double step(int k, const std::function<torch::Tensor()>& forward_loss, torch::optim::Optimizer& optimizer);
  void report(const training_job& job, const torch::nn::Module& model, std::int64_t microbatch_rows);

private:
  trace measured_;
};
// `step_ms X` from each rank's wall time per step (as time_steps says).
void print_step_ms(const std::vector<std::vector<double>>& step_us_per_rank);
// One write per message, so lines of processes sharing a terminal or pipe do not interleave.
void say(const std::string& line);

} // namespace pippy
