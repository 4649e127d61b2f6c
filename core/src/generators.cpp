#include "pippy/core/generators.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>

#include "pippy/core/error.hpp"

namespace pippy {
namespace {

using act = action_kind;

std::string num(int v) { return std::to_string(v); }

void require(bool ok, const std::string& message) {
  if (!ok)
    throw input_error(message);
}

schedule empty_schedule(const schedule_options& o, placement_style placement) {
  schedule s;
  s.name = o.name;
  s.shape = pipeline_shape{.num_ranks = o.num_ranks, .stages_per_rank = o.stages_per_rank,
                           .num_microbatches = o.num_microbatches, .placement = placement};
  s.shape.validate();
  s.ranks.resize(static_cast<std::size_t>(o.num_ranks));
  return s;
}

void require_single_stage(const schedule_options& o) {
  require(o.stages_per_rank == 1, "stages-per-rank: schedule '" + o.name + "' runs one stage per rank (got " +
                                      num(o.stages_per_rank) + ")");
}

// GPipe: all forwards, then all backwards (fill-drain).
schedule gpipe(const schedule_options& o) {
  require_single_stage(o);
  auto s = empty_schedule(o, placement_style::looped);
  for (int r = 0; r < o.num_ranks; ++r) {
    for (int m = 0; m < o.num_microbatches; ++m)
      s.ranks[r].push_back({r, act::forward, m});
    for (int m = 0; m < o.num_microbatches; ++m)
      s.ranks[r].push_back({r, act::full_backward, m});
  }
  return s;
}

// 1F1B: rank r runs min(M, R - r) forwards, then alternates one backward and one forward.
schedule one_f_one_b(const schedule_options& o) {
  require_single_stage(o);
  require(o.num_microbatches >= o.num_ranks, "microbatches: 1f1b needs at least as many micro-batches as stages (" +
                                                 num(o.num_ranks) + "), got " + num(o.num_microbatches));
  auto s = empty_schedule(o, placement_style::looped);
  const int M = o.num_microbatches;
  for (int r = 0; r < o.num_ranks; ++r) {
    const int warmup = std::min(M, o.num_ranks - r);
    int f = 0, b = 0;
    for (; f < warmup; ++f)
      s.ranks[r].push_back({r, act::forward, f});
    while (b < M) {
      s.ranks[r].push_back({r, act::full_backward, b++});
      if (f < M)
        s.ranks[r].push_back({r, act::forward, f++});
    }
  }
  return s;
}

// Looped BFS: each rank runs all micro-batches through its first stage, then its next, and the
// backwards in reverse stage and micro-batch order.
schedule looped_bfs(const schedule_options& o) {
  auto s = empty_schedule(o, placement_style::looped);
  for (int r = 0; r < o.num_ranks; ++r) {
    auto stages = s.shape.stages_of(r);
    for (int st : stages)
      for (int m = 0; m < o.num_microbatches; ++m)
        s.ranks[r].push_back({st, act::forward, m});
    for (auto it = stages.rbegin(); it != stages.rend(); ++it)
      for (int m = o.num_microbatches - 1; m >= 0; --m)
        s.ranks[r].push_back({*it, act::full_backward, m});
  }
  return s;
}

// Appends to a rank's list with one micro-batch counter per (stage, kind), as PyTorch's generators
// do: each new F, I/B or W of a stage takes that stage's next micro-batch.
class rank_builder {
public:
  rank_builder(std::vector<action>& out, int num_stages) : out_(out), next_(static_cast<std::size_t>(num_stages)) {}
  void forward(int stage) { push(stage, act::forward, next_[stage].f++); }
  void full_backward(int stage) {
    push(stage, act::full_backward, next_[stage].i++);
    ++next_[stage].w;
  }
  void backward_input(int stage) {
    const int mb = next_[stage].i++;
    push(stage, act::backward_input, mb);
    pending_w_.push_back({stage, mb});
  }
  void backward_weight(int stage) { push(stage, act::backward_weight, next_[stage].w++); }
  // The W of the oldest input-backward still waiting for one; nothing if none waits.
  void oldest_weight() {
    if (pending_w_.empty())
      return;
    auto [stage, mb] = pending_w_.front();
    pending_w_.pop_front();
    push(stage, act::backward_weight, mb);
  }
  int forwards(int stage) const { return next_[stage].f; }
  int input_backwards(int stage) const { return next_[stage].i; }
  int weight_backwards(int stage) const { return next_[stage].w; }

private:
  struct counters {
    int f = 0, i = 0, w = 0;
  };
  void push(int stage, act kind, int mb) { out_.push_back({stage, kind, mb}); }
  std::vector<action>& out_;
  std::vector<counters> next_;
  std::deque<std::pair<int, int>> pending_w_;
};

// Interleaved 1F1B (Megatron's order, as PyTorch generates it) and its zero-bubble variant. Micro-batches
// run in rounds of `per_round`; the op-th forward of rank r is on local stage (op / per_round) % V,
// backwards mirror it from the last local stage. The zero-bubble variant splits B into I and W, warms
// up with one forward per downstream rank instead of two, and runs each W r backwards late.
schedule interleaved(const schedule_options& o, bool zero_bubble) {
  const int R = o.num_ranks, V = o.stages_per_rank, M = o.num_microbatches;
  const int rounds = std::max(1, M / R);
  // With one stage per rank the rounds do not change the order, so only interleaving constrains M.
  require(V == 1 || M % rounds == 0, "microbatches: " + o.name + " needs a multiple of the number of rounds (" + num(rounds) +
                               " = max(1, microbatches / ranks)), got " + num(M));
  const int per_round = V == 1 ? M : M / rounds;
  auto s = empty_schedule(o, placement_style::looped);
  const int total = M * V;
  for (int r = 0; r < R; ++r) {
    rank_builder b(s.ranks[r], s.shape.num_stages());
    const int warmup = std::min((V - 1) * per_round + (zero_bubble ? 1 : 2) * (R - 1 - r), total);
    auto forward_stage = [&](int op) { return ((op / per_round) % V) * R + r; };
    auto backward_stage = [&](int op) { return (V - 1 - ((op - warmup) / per_round) % V) * R + r; };
    std::deque<int> weight_stages; // stages whose I ran and whose W is still due
    auto backward = [&](int op) {
      if (!zero_bubble)
        return b.full_backward(backward_stage(op));
      b.backward_input(backward_stage(op));
      weight_stages.push_back(backward_stage(op));
      if (op - warmup >= r) {
        b.backward_weight(weight_stages.front());
        weight_stages.pop_front();
      }
    };
    for (int op = 0; op < total + warmup; ++op) {
      if (op < warmup) {
        b.forward(forward_stage(op));
      } else if (op < total) {
        b.forward(forward_stage(op));
        backward(op);
      } else {
        backward(op);
      }
    }
    for (int st : weight_stages)
      b.backward_weight(st);
  }
  return s;
}

schedule interleaved_1f1b(const schedule_options& o) { return interleaved(o, false); }
schedule interleaved_zb(const schedule_options& o) { return interleaved(o, true); }

// ZB-H1 from the zero-bubble paper is PyTorch's ZB1P on one stage per rank: 1F1B's order with B split
// into I and W, rank r running each W r backwards late, so every rank holds at most R micro-batches
// (1F1B's peak) and the bubble shrinks to (R-1)(F+I-W).
schedule zb_h1(const schedule_options& o) {
  require_single_stage(o);
  return interleaved(o, true);
}

void require_two_v_stages(const schedule_options& o) {
  require(o.stages_per_rank == 2, "stages-per-rank: " + o.name + " needs exactly 2 stages per rank (got " +
                                      num(o.stages_per_rank) + ")");
}

// ZB-V: two stages per rank in a V (rank r holds r and 2R-1-r), forwards and input-backwards
// interleaved so that the V's turn on the last rank needs no communication, W's trailing to fill
// bubbles. Micro-batches are padded to max(2R-1, M) while generating, the padding dropped after.
schedule zbv(const schedule_options& o) {
  require_two_v_stages(o);
  const int R = o.num_ranks, M = o.num_microbatches, padded = std::max(2 * R - 1, M);
  auto s = empty_schedule(o, placement_style::v_shape);
  for (int r = 0; r < R; ++r) {
    std::vector<action> padded_list;
    rank_builder b(padded_list, s.shape.num_stages());
    const int c0 = r, c1 = 2 * R - 1 - r;
    auto fiw = [&](int st) {
      b.forward(st);
      b.backward_input(st);
      b.backward_weight(st);
    };
    for (int i = 0; i < 2 * (R - r) - 1; ++i)
      b.forward(c0);
    for (int i = 0; i < r; ++i) {
      b.forward(c1);
      b.forward(c0);
    }
    for (int i = 0; i < R - r; ++i)
      fiw(c1);
    while (b.forwards(c1) < b.forwards(c0) || b.forwards(c0) < padded) {
      if (b.forwards(c0) < padded)
        b.forward(c0);
      b.backward_input(c0);
      b.backward_weight(c0);
      fiw(c1);
    }
    for (int i = 0; i < r; ++i) {
      b.backward_input(c0);
      b.backward_input(c1);
    }
    for (int i = 0; i < R - r; ++i) {
      b.backward_input(c0);
      b.backward_weight(c0);
    }
    while (b.weight_backwards(c1) < b.input_backwards(c1))
      b.backward_weight(c1);
    while (b.weight_backwards(c0) < b.input_backwards(c0))
      b.backward_weight(c0);
    for (const auto& a : padded_list)
      if (a.microbatch < M)
        s.ranks[r].push_back(a);
  }
  return s;
}

// DualPipe-V (DeepSeek's DualPipe folded into a V, as PyTorch generates it). Its overlapped F/B pairs
// are written as the F followed by the B, which is what PyTorch's runtime does unless an overlap
// function is registered.
schedule dualpipev(const schedule_options& o) {
  require_two_v_stages(o);
  const int R = o.num_ranks, M = o.num_microbatches, S = 2 * R;
  require(M >= S, "microbatches: dualpipev needs at least as many micro-batches as stages (" + num(S) + "), got " +
                      num(M));
  auto s = empty_schedule(o, placement_style::v_shape);
  for (int r = 0; r < R; ++r) {
    rank_builder b(s.ranks[r], S);
    const int s0 = r, s1 = 2 * R - 1 - r;
    auto overlap = [&](int f_stage, int b_stage) {
      b.forward(f_stage);
      b.full_backward(b_stage);
    };
    for (int i = 0; i < 2 * (R - r - 1); ++i)
      b.forward(s0);
    for (int i = 0; i < r + 1; ++i) {
      b.forward(s0);
      b.forward(s1);
    }
    for (int i = 0; i < R - r - 1; ++i) {
      b.backward_input(s1);
      b.oldest_weight();
      b.forward(s1);
    }
    for (int i = 0; i <= M - 2 * R + r; ++i) {
      overlap(s0, s1);
      overlap(s1, s0);
    }
    for (int i = 0; i < R - r - 1; ++i) {
      b.full_backward(s1);
      overlap(s1, s0);
    }
    bool split = false;
    const int k = r + 1;
    auto backward = [&](int st) { split ? b.backward_input(st) : b.full_backward(st); };
    for (int i = 0; i < k; ++i) {
      if (i == k / 2 && r % 2 == 1)
        split = true;
      backward(s1);
      if (i == k / 2 && r % 2 == 0)
        split = true;
      backward(s0);
    }
    for (int i = 0; i < R - r - 1; ++i) {
      b.oldest_weight();
      backward(s0);
    }
    for (int i = 0; i < r + 1; ++i)
      b.oldest_weight();
  }
  return s;
}

// ZB-H2 from the zero-bubble paper, generated by its greedy rule on unit costs (F = I = W = 1): a free
// rank runs a ready I first (it is on the critical path), else its next F while fewer than 2R - 1
// micro-batches hold activations on it (forwarded, W not yet run), else its oldest pending W. The
// extra forwards fill the warm-up and the W's the tail, so each rank is busy from its first action to
// its last (the paper's parallelogram).
schedule zb_h2(const schedule_options& o) {
  require_single_stage(o);
  const int R = o.num_ranks, M = o.num_microbatches, S = R, limit = 2 * R - 1;
  auto s = empty_schedule(o, placement_style::looped);
  constexpr int never = -1;
  std::vector<std::vector<int>> f_end(S, std::vector<int>(M, never)), i_end = f_end;
  std::vector<int> next_f(S, 0), next_i(S, 0), in_flight(S, 0);
  std::vector<std::deque<int>> pending_w(S);
  std::size_t remaining = static_cast<std::size_t>(S) * M * 3;
  auto done_by = [](int end, int t) { return end != never && end <= t; };
  for (int t = 0; remaining > 0; ++t) {
    for (int st = 0; st < S; ++st) {
      auto& list = s.ranks[st];
      const int mi = next_i[st], mf = next_f[st];
      if (mi < M && done_by(f_end[st][mi], t) && (st == S - 1 || done_by(i_end[st + 1][mi], t))) {
        list.push_back({st, act::backward_input, mi});
        i_end[st][mi] = t + 1;
        pending_w[st].push_back(mi);
        ++next_i[st];
      } else if (mf < M && in_flight[st] < limit && (st == 0 || done_by(f_end[st - 1][mf], t))) {
        list.push_back({st, act::forward, mf});
        f_end[st][mf] = t + 1;
        ++in_flight[st];
        ++next_f[st];
      } else if (!pending_w[st].empty()) {
        list.push_back({st, act::backward_weight, pending_w[st].front()});
        pending_w[st].pop_front();
        --in_flight[st];
      } else {
        continue;
      }
      --remaining;
    }
  }
  return s;
}

struct generator {
  std::string_view name;
  int default_stages_per_rank;
  std::function<schedule(const schedule_options&)> make;
};

const std::vector<generator>& generators() {
  static const std::vector<generator> all = {
      {"gpipe", 1, gpipe},
      {"1f1b", 1, one_f_one_b},
      {"interleaved-1f1b", 1, interleaved_1f1b},
      {"looped-bfs", 1, looped_bfs},
      {"interleaved-zb", 1, interleaved_zb},
      {"zbv", 2, zbv},
      {"dualpipev", 2, dualpipev},
      {"zb-h1", 1, zb_h1},
      {"zb-h2", 1, zb_h2},
  };
  return all;
}

} // namespace

const std::vector<std::string_view>& schedule_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& g : generators())
      out.push_back(g.name);
    return out;
  }();
  return names;
}

schedule make_schedule(const schedule_options& options) {
  auto it = std::find_if(generators().begin(), generators().end(),
                         [&](const generator& g) { return g.name == options.name; });
  if (it == generators().end()) {
    std::string known;
    for (auto n : schedule_names())
      known += (known.empty() ? "" : ", ") + std::string(n);
    throw input_error("schedule: unknown name '" + options.name + "' (known: " + known + ")");
  }
  schedule_options o = options;
  if (o.stages_per_rank == 0)
    o.stages_per_rank = it->default_stages_per_rank;
  require(o.num_ranks >= 1, "ranks must be at least 1 (got " + num(o.num_ranks) + ")");
  require(o.num_microbatches >= 1, "microbatches must be at least 1 (got " + num(o.num_microbatches) + ")");
  require(o.stages_per_rank >= 1, "stages-per-rank must be at least 1 (got " + num(o.stages_per_rank) + ")");
  schedule s = it->make(o);
  if (o.optimizer_steps)
    for (int r = 0; r < o.num_ranks; ++r)
      for (int st : s.shape.stages_of(r))
        s.ranks[r].push_back({st, act::optimizer_step, no_microbatch});
  return s;
}

} // namespace pippy
