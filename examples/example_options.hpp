#pragma once
// What the example programs (mynetwork, gpt) share besides runtime's training loop (training.hpp):
// the options every example has, the command-line options of a training_job, and the optimizer. Header-only (CLI11 is the examples').
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <csignal>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "pippy/cli/options.hpp"
#include "pippy/core/planner.hpp"
#include "pippy/runtime/environment.hpp"
#include "pippy/runtime/training.hpp"

namespace pippy::examples {

// Every example's own options besides the model's (the example sets batch and lr).
struct common_options {
  std::uint64_t seed = 0;
  int64_t batch = 0;
  double lr = 0;
  int threads = 1;
};

// --lr and --threads.
inline void add_optimizer_options(CLI::App& app, common_options& o) {
  app.add_option("--lr", o.lr, "SGD learning rate (momentum 0.9)");
  app.add_option("--threads", o.threads, "libtorch intra-op threads per process")->check(CLI::PositiveNumber);
}

// --split: how the model becomes stages, the same two words in every example. manual: at the split points the
// example's author chose (manual_help says where); auto: pipeline() balances the model into the schedule's stages.
inline void add_split_option(CLI::App& app, std::string& split, const std::string& manual_help) {
  app.add_option("--split", split, "manual: " + manual_help + "; auto: pipeline() balances the model into the schedule's stages")
      ->check(CLI::IsMember({"manual", "auto"}));
}

// --schedule and --runtime.
inline void add_schedule_options(CLI::App& app, training_job& job) {
  app.add_option("--schedule", job.schedule, "schedule name (pippy schedule --list)");
  app.add_option("--runtime", job.runtime, "actors: the stage actors shared with the simulator; engine: a plain loop")
      ->transform(cli::one_of(std::map<std::string, runtime_kind>{{"actors", runtime_kind::actors}, {"engine", runtime_kind::engine}}))
      ->type_name("actors|engine")
      ->default_str("actors");
}

// Where the ranks run, how long a lost peer may take, and what is written: --in-process, --bind-cores, --dp, --timeout,
// --heartbeat-timeout, --checkpoint-dir, --checkpoint-every, --checkpoint-keep, --resume, --trace, --step-trace,
// --profile, --live, --time, --export-dir, and add_fault_options'.
inline void add_fault_options(CLI::App& app, training_job& job);

inline void add_run_options(CLI::App& app, training_job& job) {
  add_fault_options(app, job);
  app.add_option("--in-process", job.in_process, "run all R ranks of the schedule in this process");
  app.add_flag("--bind-cores", job.bind_cores,
               "this rank on its own share of the host's CPUs (LOCAL_RANK of LOCAL_WORLD_SIZE) and its compute thread "
               "yielding to its transport threads, as `pippy run --bind-cores` starts it: for launchers that bind "
               "nothing (torchrun)");
  app.add_option("--dp", job.data_parallel,
                 "data-parallel replicas of the pipeline: WORLD_SIZE = pipeline ranks x DP, each replica trains its "
                 "slice of the batch and the stages' gradients are averaged over the replicas before each optimizer step")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--dp-sync", job.grad_sync,
                 "when the replicas' gradients are all-reduced: overlap (from a stage's last backward on, beside the "
                 "rest of the pipeline) or at-step (at its optimizer step)")
      ->transform(cli::one_of(std::map<std::string, grad_sync_mode>{{"overlap", grad_sync_mode::overlap}, {"at-step", grad_sync_mode::at_step}}))
      ->type_name("overlap|at-step")
      ->default_str("overlap");
  app.add_flag("--zero1", job.zero1,
               "with --dp: ZeRO-1, each replica keeps the optimizer state of 1/DP of a stage's parameters and the "
               "updated parameters are all-gathered after each step");
  app.add_option("--timeout", job.timeout_s, "c10d timeout in seconds (a lost peer is reported by then)")
      ->check(cli::within(0.1, 86400))
      ->capture_default_str();
  app.add_option("--heartbeat-timeout", job.heartbeat_s,
                 "seconds a rank may miss its heartbeat before it is named as not responding (0: none, only --timeout)")
      ->check(cli::within(0, 86400))
      ->capture_default_str();
  app.add_option("--checkpoint-dir", job.checkpoint_dir,
                 "write checkpoints here (DIR/step-K/: one shard per stage, manifest.json last)")
      ->type_name("DIR");
  app.add_option("--checkpoint-every", job.checkpoint_every, "a checkpoint after every N steps (0: none)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  app.add_option("--checkpoint-keep", job.checkpoint_keep, "keep the newest K complete checkpoints")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_flag("--resume", job.resume,
               "continue from the newest complete checkpoint in --checkpoint-dir (a restarted rank does so by itself)");
  app.add_option("--trace", job.trace_file, "write the measured Chrome trace here (rank 0)");
  app.add_option("--step-trace", job.step_trace_file, "write the last step's measured trace here (rank 0)");
  app.add_option("--profile", job.profile_file, "write measured per-stage costs (simulator cost file)");
  app.add_option("--live", job.live,
                 "publish every rank's events as they happen for `pippy-view --live`: a TCP PORT on 127.0.0.1 (0: any "
                 "free one, printed) served by rank 0, or a FILE.jsonl")
      ->type_name("PORT|FILE");
  app.add_flag("--time", job.time_steps, "a barrier before each step; print step_ms (median, after the first step)");
  app.add_option("--export-dir", job.export_dir,
                 "write the initial parameters, the data and the final parameters here (for a peer to train the same)");
}

// Fault injection, for tests of failures and restarts: --fail-rank R --fail-step K [--fail-how kill|stop]:
// rank R kills (SIGKILL) or stops (SIGSTOP: it hangs) itself at the start of step K, on the first attempt.
inline void add_fault_options(CLI::App& app, training_job& job) {
  app.add_option("--fail-rank", job.fail_rank, "fault injection: this rank kills itself...");
  app.add_option("--fail-step", job.fail_step, "...at the start of this step (first attempt only)...");
  app.add_option("--fail-how", job.fail_signal, "...kill: it dies; stop: it hangs (SIGSTOP)")
      ->transform(cli::one_of(std::map<std::string, int>{{"kill", SIGKILL}, {"stop", SIGSTOP}}))
      ->type_name("kill|stop")
      ->default_str("kill");
}

// Every option this process was started with, as (name, value), for the ranks to compare before the first
// step (training_job::settings): ranks started differently refuse to run, naming the rank and the option.
inline std::vector<std::pair<std::string, std::string>> settings_of(const CLI::App& app) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream lines(app.config_to_str(/*default_also=*/true, /*write_description=*/false));
  for (std::string line; std::getline(lines, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos && !line.starts_with("#"))
      out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

// --plan DIR: `pippy plan --emit`'s plan.
inline void add_plan_option(CLI::App& app, std::string& plan_dir) {
  app.add_option("--plan", plan_dir,
                 "run pippy plan's DIR/plan.json: its schedule, stages per rank, micro-batches and split (--split manual)")
      ->type_name("DIR");
}

// Sets the job's schedule, V, M, replicas (--dp) and ZeRO-1 (--zero1) from DIR/plan.json and returns the plan's split: the first layer of
// stages 1.. (empty without a plan). Throws input_error naming the file and field.
inline std::vector<int> apply_plan(const std::string& plan_dir, training_job& job) {
  if (plan_dir.empty())
    return {};
  const emitted_plan plan = load_plan(plan_dir);
  const int world = job.in_process > 0 ? job.in_process : read_dist_env().world_size;
  if (plan.ranks * plan.replicas != world)
    throw input_error("plan file '" + plan_dir + "/plan.json': the plan is for " + std::to_string(plan.ranks) +
                      " ranks x " + std::to_string(plan.replicas) + " replicas, this run has " + std::to_string(world) +
                      " processes");
  job.data_parallel = plan.replicas;
  job.zero1 = plan.zero1;
  job.schedule = plan.schedule;
  job.stages_per_rank = plan.stages_per_rank;
  job.microbatches = plan.microbatches;
  if (plan.boundaries.size() < 2)
    return {};
  return {plan.boundaries.begin() + 1, plan.boundaries.end()};
}

// SGD with momentum, the examples' optimizer (pipelined and unsplit alike).
inline constexpr double sgd_momentum = 0.9;
inline std::shared_ptr<torch::optim::Optimizer> sgd(std::vector<torch::Tensor> params, double lr) {
  return std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(lr).momentum(sgd_momentum));
}

} // namespace pippy::examples
