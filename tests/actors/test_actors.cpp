// The stage and micro-batch actors against hand-written executor and transport twins (no simulator):
// order of execution, data flowing through the typed payloads, blocking sends, failures, completions
// returned at once or sent later, several steps through the same actors.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "pippy/actors/pipeline.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/validate.hpp"

using namespace pippy;
using namespace pippy::actors;

namespace {

// Tags each output with (stage, kind, micro-batch) and checks each input is the neighbour's output.
struct recording_executor final : executor {
  int rank = 0;
  int num_stages = 0;
  std::vector<action>* log = nullptr;
  std::vector<std::string>* errors = nullptr;
  std::optional<action> fail_at;
  bool completes_in_place = false; // return the completion instead of sending it

  std::optional<completion> run(const action& a, payload_data input, const caf::actor& reply_to) override {
    log->push_back(a);
    auto tag = [](int stage, char kind, int mb) { return std::to_string(stage) + kind + std::to_string(mb); };
    std::string expect;
    if (a.kind == action_kind::forward && a.stage > 0)
      expect = tag(a.stage - 1, 'F', a.microbatch);
    if (is_input_backward(a.kind) && a.stage < num_stages - 1)
      expect = tag(a.stage + 1, 'B', a.microbatch);
    const auto* got = input.get_if<std::string>();
    if (expect.empty() ? got != nullptr : (!got || *got != expect))
      errors->push_back(to_string(a) + " got " + (got ? *got : "nothing") + ", expected " + expect);
    completion c{.act = a, .start_us = 0, .end_us = 0};
    if (fail_at && *fail_at == a)
      c.error = failure{failure_kind::compute_error, "boom at " + to_string(a)};
    if (a.kind == action_kind::forward)
      c.output = payload_data::of(tag(a.stage, 'F', a.microbatch)), c.output_bytes = 8;
    if (is_input_backward(a.kind))
      c.output = payload_data::of(tag(a.stage, 'B', a.microbatch)), c.output_bytes = 8;
    if (a.kind == action_kind::forward && a.stage == num_stages - 1)
      c.loss = 0.5 + a.microbatch;
    if (completes_in_place)
      return c;
    caf::anon_send(reply_to, std::move(c));
    return std::nullopt;
  }
};

struct direct_transport final : transport {
  std::map<int, caf::actor> stages;
  bool block = false;
  int sent = 0;
  std::optional<action> fail_at; // this transfer fails: nothing is delivered, the sender hears why
  int steps_begun = 0, steps_ended = 0;
  void attach(int stage, const caf::actor& a) override { stages[stage] = a; }
  void begin_step(const caf::actor&) override { ++steps_begun; }
  std::optional<failure> end_step() override {
    ++steps_ended;
    return std::nullopt;
  }
  bool blocking() const override { return block; }
  void send(payload p, const caf::actor& sender) override {
    ++sent;
    const action a{p.src_stage, p.kind, p.microbatch};
    if (fail_at && *fail_at == a) {
      caf::anon_send(sender, send_done{a, 0, failure{failure_kind::peer_lost, "link down during " + to_string(a)}});
      return;
    }
    caf::anon_send(stages.at(p.dst_stage), std::move(p));
    if (block)
      caf::anon_send(sender, send_done{a, 0, {}});
  }
};

struct outcome {
  std::vector<int> ranks_done;
  std::vector<stage_failed> failures;
  std::map<int, std::optional<double>> microbatches;
};

// The pipeline's supervisor: records what the rank and stage actors report into `out`.
caf::actor collect(caf::actor_system& sys, std::shared_ptr<outcome> out) {
  return sys.spawn([out](caf::event_based_actor*) -> caf::behavior {
    return {
        [out](const rank_finished& f) { out->ranks_done.push_back(f.rank); },
        [out](const stage_failed& f) { out->failures.push_back(f); },
        [out](const microbatch_finished& f) { out->microbatches[f.microbatch] = f.loss; },
    };
  });
}

struct run_result {
  std::vector<std::vector<action>> logs;
  std::vector<std::string> errors;
  outcome out;
  int sent = 0;
};

run_result run(const schedule& compute_only, bool blocking, std::optional<action> fail_at = {},
               std::optional<action> fail_send = {}, bool completes_in_place = false) {
  const schedule s = add_communication(compute_only);
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  run_result res;
  {
    caf::actor_system sys{cfg};
    auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
    const int R = s.shape.num_ranks;
    res.logs.resize(static_cast<std::size_t>(R));
    std::vector<recording_executor> execs(static_cast<std::size_t>(R));
    std::vector<executor*> ptrs;
    for (int r = 0; r < R; ++r) {
      auto& e = execs[static_cast<std::size_t>(r)];
      e.rank = r, e.num_stages = s.shape.num_stages(), e.log = &res.logs[static_cast<std::size_t>(r)];
      e.errors = &res.errors, e.fail_at = fail_at, e.completes_in_place = completes_in_place;
      ptrs.push_back(&e);
    }
    direct_transport net;
    net.block = blocking;
    net.fail_at = fail_send;
    auto out = std::make_shared<outcome>();
    auto sup = collect(sys, out);
    auto h = spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = ptrs, .net = &net, .supervisor = sup});
    h.start();
    sched.run();
    h.stop();
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
    res.out = *out;
    res.sent = net.sent;
  }
  return res;
}

// A pipeline's parts for a test that drives CAF's testing scheduler itself: recording executors for
// `ranks` ranks of a schedule of `num_stages` stages, a direct transport, and a collecting supervisor.
class stepped_run {
public:
  stepped_run(int ranks, int num_stages) : logs_(static_cast<std::size_t>(ranks)), execs_(static_cast<std::size_t>(ranks)) {
    cfg_.set("scheduler.policy", caf::atom("testing"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
    for (int r = 0; r < ranks; ++r) {
      auto& e = execs_[static_cast<std::size_t>(r)];
      e.rank = r, e.num_stages = num_stages, e.log = &logs_[static_cast<std::size_t>(r)], e.errors = &errors_;
      ptrs_.push_back(&e);
    }
    sup_ = collect(*sys_, out_);
  }
  auto parts() {
    return std::tie(*sys_, *sched_, logs_, errors_, execs_, ptrs_, net_, out_, sup_);
  }

private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_; // declared before every handle: goes last
  caf::scheduler::test_coordinator* sched_ = nullptr;
  std::vector<std::vector<action>> logs_;
  std::vector<std::string> errors_;
  std::vector<recording_executor> execs_;
  std::vector<executor*> ptrs_;
  direct_transport net_;
  std::shared_ptr<outcome> out_ = std::make_shared<outcome>();
  caf::actor sup_;
};

std::vector<action> compute_order(const schedule& s, int rank) {
  std::vector<action> out;
  for (const auto& a : s.ranks[static_cast<std::size_t>(rank)])
    if (is_compute(a.kind))
      out.push_back(a);
  return out;
}

} // namespace

TEST_CASE("stage actors run each rank's list in order and pass payloads between stages", "[actors]") {
  for (auto opts : {schedule_options{.name = "1f1b", .num_ranks = 4, .num_microbatches = 8},
                    schedule_options{.name = "interleaved-1f1b", .num_ranks = 2, .num_microbatches = 4, .stages_per_rank = 3},
                    schedule_options{.name = "zbv", .num_ranks = 3, .num_microbatches = 6},
                    schedule_options{.name = "zb-h2", .num_ranks = 3, .num_microbatches = 6}}) {
    for (auto [blocking, in_place] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
      INFO(opts.name << (blocking ? " blocking" : " async") << (in_place ? ", completions returned" : ", completions sent"));
      const schedule s = make_schedule(opts);
      const auto r = run(s, blocking, {}, {}, in_place);
      CHECK(r.errors.empty());
      for (const auto& e : r.errors)
        UNSCOPED_INFO(e);
      for (int rk = 0; rk < s.shape.num_ranks; ++rk)
        CHECK(r.logs[static_cast<std::size_t>(rk)] == compute_order(s, rk));
      CHECK(r.out.ranks_done.size() == static_cast<std::size_t>(s.shape.num_ranks));
      CHECK(r.out.failures.empty());
      // Every transfer of the lowered schedule went through the transport, once.
      int sends = 0;
      for (const auto& list : add_communication(s).ranks)
        for (const auto& a : list)
          sends += a.kind == action_kind::send_f || a.kind == action_kind::send_b;
      CHECK(r.sent == sends);
      // Every micro-batch actor saw its micro-batch through, with the loss from the last stage's F.
      REQUIRE(r.out.microbatches.size() == static_cast<std::size_t>(s.shape.num_microbatches));
      for (auto& [mb, loss] : r.out.microbatches) {
        REQUIRE(loss);
        CHECK(*loss == 0.5 + mb);
      }
    }
  }
}

TEST_CASE("a failed action stops its rank and is reported with the action", "[actors]") {
  const schedule s = make_schedule({.name = "1f1b", .num_ranks = 3, .num_microbatches = 6});
  const action bad{1, action_kind::full_backward, 2};
  const auto r = run(s, false, bad);
  REQUIRE(r.out.failures.size() == 1);
  CHECK(r.out.failures[0].rank == 1);
  CHECK(r.out.failures[0].act == bad);
  CHECK(r.out.failures[0].error.kind == failure_kind::compute_error);
  CHECK(r.out.failures[0].error.message == "boom at 1B2");
  // Rank 1 ran nothing after 1B2; it never finished, and micro-batch 2 never completed.
  CHECK(r.logs[1].back() == bad);
  CHECK(std::find(r.out.ranks_done.begin(), r.out.ranks_done.end(), 1) == r.out.ranks_done.end());
  CHECK(r.out.microbatches.count(2) == 0);
}

TEST_CASE("a transport error on a blocking send stops its rank and is reported with the send", "[actors]") {
  const schedule s = make_schedule({.name = "1f1b", .num_ranks = 3, .num_microbatches = 6});
  const action bad{0, action_kind::send_f, 3};
  const auto r = run(s, true, {}, bad);
  REQUIRE(r.out.failures.size() == 1);
  CHECK(r.out.failures[0].rank == 0);
  CHECK(r.out.failures[0].act == bad);
  CHECK(r.out.failures[0].error.kind == failure_kind::peer_lost);
  CHECK(r.out.failures[0].error.message == "link down during 0SEND_F3");
  // Rank 0 ran its list up to the failed send and nothing after it (1F1B at R=3 by hand: warm-up 0F0 0F1
  // 0F2, then 0B0 0F3 0B1 ...; the send of 0F3 follows 0F3).
  CHECK(r.logs[0] == std::vector<action>{{0, action_kind::forward, 0}, {0, action_kind::forward, 1},
                                         {0, action_kind::forward, 2}, {0, action_kind::full_backward, 0},
                                         {0, action_kind::forward, 3}});
  CHECK(std::find(r.out.ranks_done.begin(), r.out.ranks_done.end(), 0) == r.out.ranks_done.end());
  // Micro-batch 3 never reached rank 1: it never ran 1F3, nor finished, and micro-batch 3 never completed.
  CHECK(std::find(r.logs[1].begin(), r.logs[1].end(), action{1, action_kind::forward, 3}) == r.logs[1].end());
  CHECK(std::find(r.out.ranks_done.begin(), r.out.ranks_done.end(), 1) == r.out.ranks_done.end());
  CHECK(r.out.microbatches.count(3) == 0);
  CHECK(r.errors.empty());
}

TEST_CASE("stop in the middle of a run: every actor quits, at most the action in flight per rank follows",
          "[actors]") {
  const schedule s = add_communication(make_schedule({.name = "1f1b", .num_ranks = 3, .num_microbatches = 6}));
  stepped_run run(3, 3);
  auto [sys, sched, logs, errors, execs, ptrs, net, out, sup] = run.parts();
  const std::size_t before = sys.registry().running();
  auto h = spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = ptrs, .net = &net, .supervisor = sup});
  CHECK(sys.registry().running() == before + 3 + 6); // 3 stage actors, 6 micro-batch actors
  h.start();
  // Run until rank 2 (the last stage) has finished its first backward: mid-run on every rank.
  const action mid{2, action_kind::full_backward, 0};
  while (std::find(logs[2].begin(), logs[2].end(), mid) == logs[2].end())
    REQUIRE(sched.try_run_once());
  std::size_t computes = 0, ran = 0;
  for (const auto& list : s.ranks)
    for (const auto& a : list)
      computes += is_compute(a.kind);
  std::vector<std::size_t> at_stop;
  for (const auto& l : logs)
    at_stop.push_back(l.size()), ran += l.size();
  REQUIRE(ran > 0);
  REQUIRE(ran < computes);
  h.stop();
  sched.run();
  // Every actor of the pipeline quit; each rank started at most the one action whose input was already
  // queued, and none finished its list.
  CHECK(sys.registry().running() == before);
  for (std::size_t r = 0; r < 3; ++r) {
    INFO("rank " << r);
    CHECK(logs[r].size() <= at_stop[r] + 1);
  }
  CHECK(out->ranks_done.empty());
  CHECK(out->failures.empty());
  CHECK(out->microbatches.size() < 6);
  CHECK(errors.empty());
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
}

TEST_CASE("spawn_pipeline checks its setup", "[actors]") {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  caf::actor_system sys{cfg};
  const schedule s = add_communication(make_schedule({.name = "gpipe", .num_ranks = 2, .num_microbatches = 2}));
  direct_transport net;
  CHECK_THROWS_WITH(spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = {nullptr}, .net = &net}),
                    "pipeline_setup.executors: 1 executors for 2 ranks");
  CHECK_THROWS_WITH(spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = {nullptr, nullptr}}),
                    "pipeline_setup.net: no transport given");
}

namespace {

// Like a real backend: a device thread per rank runs the actions and sends completions from there.
struct threaded_executor final : executor {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<action, caf::actor>> work;
  bool done = false;
  std::atomic<int> ran{0};
  std::thread worker{[this] {
    for (;;) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done || !work.empty(); });
      if (work.empty())
        return;
      auto [a, to] = work.front();
      work.pop_front();
      lock.unlock();
      completion c{.act = a};
      if (a.kind == action_kind::forward || is_input_backward(a.kind))
        c.output = payload_data::of(a.microbatch), c.output_bytes = 4;
      ++ran;
      caf::anon_send(to, std::move(c));
    }
  }};
  std::optional<completion> run(const action& a, payload_data, const caf::actor& reply_to) override {
    {
      std::lock_guard lock(mu);
      work.emplace_back(a, reply_to);
    }
    cv.notify_one();
    return std::nullopt;
  }
  ~threaded_executor() override {
    {
      std::lock_guard lock(mu);
      done = true;
    }
    cv.notify_one();
    worker.join();
  }
};

struct locked_transport final : transport {
  std::mutex mu;
  std::map<int, caf::actor> stages;
  void attach(int stage, const caf::actor& a) override {
    std::lock_guard lock(mu);
    stages[stage] = a;
  }
  bool blocking() const override { return false; }
  void begin_step(const caf::actor&) override {}
  std::optional<failure> end_step() override { return std::nullopt; }
  void send(payload p, const caf::actor&) override {
    caf::actor to;
    {
      std::lock_guard lock(mu);
      to = stages.at(p.dst_stage);
    }
    caf::anon_send(to, std::move(p));
  }
};

} // namespace

TEST_CASE("the same actors on CAF's threaded scheduler with completions from other threads", "[actors][threads]") {
  const schedule s = add_communication(make_schedule({.name = "interleaved-1f1b", .num_ranks = 3, .num_microbatches = 6,
                                                      .stages_per_rank = 2}));
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  std::vector<std::unique_ptr<threaded_executor>> execs;
  std::vector<executor*> ptrs;
  for (int r = 0; r < 3; ++r) {
    execs.push_back(std::make_unique<threaded_executor>());
    ptrs.push_back(execs.back().get());
  }
  locked_transport net;
  caf::scoped_actor self{sys};
  auto h = spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = ptrs, .net = &net, .supervisor = self});
  h.start();
  int ranks = 0, microbatches = 0;
  bool timed_out = false;
  while (!timed_out && (ranks < 3 || microbatches < 6))
    self->receive([&](const rank_finished&) { ++ranks; }, [&](const microbatch_finished&) { ++microbatches; },
                  [&](const stage_failed& f) { FAIL(f.error.describe()); },
                  caf::after(std::chrono::seconds(10)) >> [&] { timed_out = true; });
  CHECK_FALSE(timed_out);
  CHECK(ranks == 3);
  CHECK(microbatches == 6);
  int compute = 0;
  for (const auto& list : s.ranks)
    for (const auto& a : list)
      compute += is_compute(a.kind);
  int ran = 0;
  for (auto& e : execs)
    ran += e->ran;
  CHECK(ran == compute);
  h.stop();
}

TEST_CASE("the actors live for the whole job: one spawn serves many steps, in the same order each time",
          "[actors]") {
  const schedule s =
      add_communication(make_schedule({.name = "interleaved-1f1b", .num_ranks = 2, .num_microbatches = 4,
                                       .stages_per_rank = 2}));
  stepped_run run(2, 4);
  auto [sys, sched, logs, errors, execs, ptrs, net, out, sup] = run.parts();
  execs[1].completes_in_place = true; // one rank of each kind
  const std::size_t before = sys.registry().running();
  auto h = spawn_pipeline(sys, pipeline_setup{.plan = &s, .executors = ptrs, .net = &net, .supervisor = sup});
  const std::size_t spawned = sys.registry().running();
  CHECK(spawned == before + 4 + 4); // 4 stage actors, 4 micro-batch actors
  const int steps = 5;
  for (int k = 1; k <= steps; ++k) {
    INFO("step " << k);
    for (auto& l : logs)
      l.clear();
    net.begin_step(sup);
    h.start();
    sched.run();
    CHECK(!net.end_step());
    CHECK(out->ranks_done.size() == static_cast<std::size_t>(2 * k));
    CHECK(out->microbatches.size() == 4u);
    for (int r = 0; r < 2; ++r)
      CHECK(logs[static_cast<std::size_t>(r)] == compute_order(s, r));
    CHECK(sys.registry().running() == spawned); // no actor spawned or lost between steps
  }
  CHECK(errors.empty()); // every input was the neighbour's output of the same step
  CHECK(out->failures.empty());
  CHECK(net.steps_begun == steps);
  CHECK(net.steps_ended == steps);

  // Stopped, the actors are destroyed once the last outside handle goes: the stage actors and the rank
  // context they share do not keep each other alive.
  std::vector<caf::weak_actor_ptr> weak;
  for (const auto& a : h.stages)
    weak.push_back(caf::actor_cast<caf::weak_actor_ptr>(a));
  h.stop();
  sched.run();
  CHECK(sys.registry().running() == before);
  h = {};
  net.stages.clear();
  for (const auto& w : weak)
    CHECK(!w.lock());
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
}

TEST_CASE("a payload is typed: unwrapped as another type it is a type_mismatch naming both types", "[actors]") {
  const auto d = payload_data::of(std::string("activation"));
  CHECK(d.as<std::string>(std::string()) == "activation");
  CHECK(d.get_if<int>() == nullptr);
  try {
    (void)d.as<int>(0);
    FAIL("no error");
  } catch (const failure_error& e) {
    CHECK(e.what_failed().kind == failure_kind::type_mismatch);
    CHECK_THAT(e.what(), Catch::Contains("payload holds std::") && Catch::Contains("string") &&
                             Catch::Contains(", expected int"));
  }
  CHECK(payload_data{}.as<int>(7) == 7); // empty: the caller's "none"
}
