#include "pippy/traces/chrome_trace.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pippy/core/error.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/core/text_file.hpp"

namespace pippy {
namespace {

// The largest |timestamp| or duration a trace may hold, in microseconds: epoch-based times (about 1.7e15
// today) fit with room; beyond, a viewer's span or a sum of them would lose all precision.
constexpr double max_trace_us = 1e18;

// A trace numbers its ranks from 0 and each rank has at least one element (its name or an event), so a
// rank count above the number of elements is a number in the file, not a size: refused before any
// per-rank table is sized by it.
void check_rank_count(const trace& t, std::size_t elements, const std::string& source) {
  if (static_cast<std::size_t>(t.num_ranks) > elements)
    throw input_error(source + ": names " + std::to_string(t.num_ranks) + " ranks (pids 0 to " +
                      std::to_string(t.num_ranks - 1) + ") but holds only " + std::to_string(elements) +
                      " trace events; ranks are numbered from 0");
}

using json = nlohmann::json;

std::string_view to_string(event_source s) { return s == event_source::simulated ? "simulated" : "measured"; }

// Hand-rolled formatting of the per-event lines (nlohmann::json took ~2 us a line, which dominated
// `pippy sim --live`). Keys come in the order nlohmann's sorted objects wrote them, numbers through
// std::to_chars (doubles shortest round-trip, ".0" appended to integral ones and null for non-finite,
// as nlohmann writes them), so the lines parse to exactly the values they did before. The strings are
// action names and fixed words that need no escaping.
void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
  if (std::all_of(buf, r.ptr, [](char c) { return c == '-' || (c >= '0' && c <= '9'); }))
    out += ".0"; // keep it a floating-point number, as nlohmann wrote it
}

void append_event_json(std::string& out, const trace_event& e) {
  const std::string_view kind = to_string(e.act.kind);
  out += "{\"args\":{";
  if (e.bytes) {
    out += "\"bytes\":";
    append_uint(out, e.bytes);
    out += ',';
  }
  out += "\"kind\":\"";
  out += kind;
  out += '"';
  if (e.act.microbatch != no_microbatch) {
    out += ",\"microbatch\":";
    append_int(out, e.act.microbatch);
  }
  if (e.peer >= 0) {
    out += ",\"peer\":";
    append_int(out, e.peer);
  }
  out += ",\"source\":\"";
  out += to_string(e.source);
  out += "\",\"stage\":";
  append_int(out, e.act.stage);
  out += "},\"cat\":\"";
  out += kind;
  out += "\",\"dur\":";
  append_double(out, e.end_us - e.start_us);
  out += ",\"name\":\"";
  append_int(out, e.act.stage);
  out += kind;
  if (e.act.microbatch != no_microbatch)
    append_int(out, e.act.microbatch);
  out += "\",\"ph\":\"X\",\"pid\":";
  append_int(out, e.rank);
  out += is_communication(e.act.kind) ? ",\"tid\":1,\"ts\":" : ",\"tid\":0,\"ts\":";
  append_double(out, e.start_us);
  out += '}';
}

void append_memory_json(std::string& out, const memory_sample& m) {
  out += "{\"args\":{\"bytes\":";
  append_uint(out, m.bytes);
  out += "},\"name\":\"memory\",\"ph\":\"C\",\"pid\":";
  append_int(out, m.rank);
  out += ",\"ts\":";
  append_double(out, m.t_us);
  out += '}';
}

// Markers are rare and carry free text: nlohmann escapes it.
json marker_json(const trace_marker& m) {
  return json{{"name", m.name}, {"cat", "marker"}, {"ph", "i"}, {"s", "p"}, {"pid", m.rank}, {"tid", 0},
              {"ts", m.t_us}, {"args", {{"detail", m.detail}}}};
}

// Adds one "traceEvents" element to t. Events that are neither actions nor memory (metadata, other
// tools' markers) are skipped, so that PyTorch's own traces open.
template <class Where> void add_event(const json& e, trace& t, const Where& where) {
  auto fail = [&](const std::string& why) { throw input_error(where() + ": " + why); };
  if (!e.is_object())
    fail("expected an object");
  const auto ph_it = e.find("ph");
  const std::string_view ph = ph_it != e.end() && ph_it->is_string() ? std::string_view(ph_it->get_ref<const std::string&>()) : std::string_view();
  // Times in microseconds, as other tools write them too (since the epoch: about 1.7e15 today).
  auto number = [&](const char* field) {
    if (!e.contains(field))
      fail(std::string("field \"") + field + "\" must be a finite number");
    return json_number(e[field], [&] { return where() + ": field \"" + field + "\""; }, "number of microseconds",
                       -max_trace_us, max_trace_us);
  };
  auto rank_of = [&]() {
    if (!e.contains("pid"))
      fail("field \"pid\" (the rank) must be an integer");
    const auto rank = static_cast<int>(
        json_integer(e["pid"], [&] { return where() + ": field \"pid\" (the rank)"; }, 0, limits::max_ranks - 1));
    t.num_ranks = std::max(t.num_ranks, rank + 1);
    return rank;
  };
  if (ph == "C" && e.value("name", "") == "memory") {
    memory_sample m{.rank = rank_of(), .t_us = number("ts"), .bytes = 0};
    if (!e.contains("args") || !e["args"].is_object() || !e["args"].contains("bytes") || !e["args"]["bytes"].is_number())
      fail("memory counter without numeric args.bytes");
    const auto& bytes = e["args"]["bytes"];
    m.bytes = bytes.is_number_unsigned() ? bytes.get<std::uint64_t>()
                                         : static_cast<std::uint64_t>(json_integer(
                                               bytes, where() + ": memory counter args.bytes", 0,
                                               std::numeric_limits<std::int64_t>::max()));
    t.memory.push_back(m);
    return;
  }
  if (ph == "i" && e.value("cat", "") == "marker") {
    if (!e.contains("name") || !e["name"].is_string())
      fail("marker without a string \"name\"");
    trace_marker mk{.rank = rank_of(), .t_us = number("ts"), .name = e["name"].get<std::string>(), .detail = {}};
    if (e.contains("args") && e["args"].is_object() && e["args"].contains("detail") && e["args"]["detail"].is_string())
      mk.detail = e["args"]["detail"].get<std::string>();
    t.markers.push_back(std::move(mk));
    return;
  }
  if (ph != "X")
    return;
  if (!e.contains("name") || !e["name"].is_string())
    fail("field \"name\" must be an action such as \"2F0\"");
  trace_event ev;
  try {
    ev.act = parse_action(e["name"].get<std::string>());
  } catch (const input_error& err) {
    fail(err.what());
  }
  ev.rank = rank_of();
  ev.start_us = number("ts");
  const double dur = number("dur");
  if (dur < 0)
    fail("field \"dur\" must not be negative");
  ev.end_us = ev.start_us + dur;
  if (e.contains("args") && e["args"].is_object()) {
    const auto& a = e["args"];
    if (a.contains("bytes") && a["bytes"].is_number_unsigned())
      ev.bytes = a["bytes"].get<std::uint64_t>();
    if (a.contains("peer") && a["peer"].is_number_integer())
      ev.peer = static_cast<int>(json_integer(a["peer"], [&] { return where() + ": args.peer"; }, -1, limits::max_ranks - 1));
    ev.source = a.value("source", "simulated") == "measured" ? event_source::measured : event_source::simulated;
  }
  t.events.push_back(ev);
}

} // namespace

std::string to_chrome_json(const trace& t) {
  std::ostringstream out;
  write_chrome_json(out, t);
  return out.str();
}

void write_chrome_json(std::ostream& out, const trace& t) {
  // One event per line keeps large files diffable and lets a reader stream them.
  json other{{"run", t.run}, {"ranks", t.num_ranks}};
  if (t.replicas > 1)
    other["replicas"] = t.replicas;
  out << "{\"displayTimeUnit\":\"ms\",\"otherData\":" << other.dump()
      << ",\n\"traceEvents\":[\n";
  bool first = true;
  auto sep = [&] {
    if (!first)
      out << ",\n";
    first = false;
  };
  for (int r = 0; r < t.num_ranks; ++r) {
    sep();
    out << json{{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"args", {{"name", "rank " + std::to_string(r)}}}}.dump();
  }
  std::string line;
  for (const auto& e : t.events) {
    sep();
    line.clear();
    append_event_json(line, e);
    out << line;
  }
  for (const auto& m : t.memory) {
    sep();
    line.clear();
    append_memory_json(line, m);
    out << line;
  }
  for (const auto& m : t.markers) {
    sep();
    out << marker_json(m).dump();
  }
  out << "\n]}\n";
}

void save_chrome_trace(const trace& t, const std::string& path) {
  write_file_atomically(path, [&](std::ostream& out) { write_chrome_json(out, t); });
}

namespace {

// otherData's run name and rank count; both optional, as other tools write neither.
void read_other_data(const json& o, trace& t, const std::string& source) {
  if (o.contains("run") && o["run"].is_string())
    t.run = o["run"].get<std::string>();
  if (o.contains("ranks") && o["ranks"].is_number_integer())
    t.num_ranks = static_cast<int>(json_integer(o["ranks"], source + ": otherData.ranks", 0, limits::max_ranks));
  if (o.contains("replicas")) {
    t.replicas = static_cast<int>(json_integer(o["replicas"], source + ": otherData.replicas", 1, limits::max_trace_replicas));
    if (t.num_ranks % t.replicas != 0)
      throw input_error(source + ": otherData.replicas: " + std::to_string(t.replicas) + " replicas do not divide " +
                        std::to_string(t.num_ranks) + " ranks (otherData.ranks)");
  }
}

// Files written by write_chrome_json hold one event per line: parsing line by line keeps each DOM small
// (about twice as fast on 1 M events, and far less memory). Returns nullopt when the text is not in
// that layout or anything in it is wrong, so the general parser reports the error as it always has.
// One event line exactly as append_event_json writes it, read without a JSON DOM (a million lines open in
// a third of the time). Values outside what add_event accepts, and any other shape, return false: that
// line then goes through add_event, which reads it or says what is wrong with it.
class own_line {
public:
  explicit own_line(std::string_view s) : s_(s) {}
  bool event(trace_event& ev) {
    if (!lit("{\"args\":{"))
      return false;
    std::uint64_t bytes = 0;
    if (lit("\"bytes\":") && !(uint(bytes) && lit(",")))
      return false;
    std::string_view kind, source, name;
    long long mb = 0, peer = -1, stage = 0, pid = 0, tid = 0;
    if (!lit("\"kind\":") || !str(kind))
      return false;
    if (lit(",\"microbatch\":") && !integer(mb))
      return false;
    if (lit(",\"peer\":") && !integer(peer))
      return false;
    double dur = 0, ts = 0;
    if (!lit(",\"source\":") || !str(source) || !lit(",\"stage\":") || !integer(stage) || !lit("},\"cat\":") ||
        !str(kind) || !lit(",\"dur\":") || !number(dur) || !lit(",\"name\":") || !str(name) ||
        !lit(",\"ph\":\"X\",\"pid\":") || !integer(pid) || !lit(",\"tid\":") || !integer(tid) || !lit(",\"ts\":") ||
        !number(ts) || !lit("}") || !s_.empty())
      return false;
    if (pid < 0 || pid >= limits::max_ranks || peer < -1 || peer >= limits::max_ranks || !(dur >= 0) ||
        !(dur <= max_trace_us) || !(std::abs(ts) <= max_trace_us) || (source != "simulated" && source != "measured"))
      return false;
    try {
      ev.act = parse_action(name);
    } catch (const input_error&) {
      return false;
    }
    ev.rank = static_cast<int>(pid);
    ev.start_us = ts;
    ev.end_us = ts + dur;
    ev.bytes = bytes;
    ev.peer = static_cast<int>(peer);
    ev.source = source == "measured" ? event_source::measured : event_source::simulated;
    return true;
  }

private:
  bool lit(std::string_view w) {
    if (!s_.starts_with(w))
      return false;
    s_.remove_prefix(w.size());
    return true;
  }
  bool str(std::string_view& out) { // printable ASCII without escapes; anything else is the JSON reader's
    if (!lit("\""))
      return false;
    for (std::size_t i = 0; i < s_.size(); ++i) {
      const auto c = static_cast<unsigned char>(s_[i]);
      if (c == '"') {
        out = s_.substr(0, i);
        s_.remove_prefix(i + 1);
        return true;
      }
      if (c < 0x20 || c >= 0x7f || c == '\\')
        return false;
    }
    return false;
  }
  // A number as JSON writes it (no leading zeros, digits on both sides of a point), read by from_chars.
  template <class T> bool parse_with_from_chars(T& v) {
    std::size_t n = s_.starts_with('-') ? 1 : 0;
    const std::size_t int_start = n;
    while (n < s_.size() && s_[n] >= '0' && s_[n] <= '9')
      ++n;
    if (n == int_start || (s_[int_start] == '0' && n - int_start > 1))
      return false;
    if (n < s_.size() && s_[n] == '.') {
      const std::size_t frac = ++n;
      while (n < s_.size() && s_[n] >= '0' && s_[n] <= '9')
        ++n;
      if (n == frac)
        return false;
    }
    if (n < s_.size() && (s_[n] == 'e' || s_[n] == 'E')) {
      ++n;
      if (n < s_.size() && (s_[n] == '+' || s_[n] == '-'))
        ++n;
      const std::size_t exp = n;
      while (n < s_.size() && s_[n] >= '0' && s_[n] <= '9')
        ++n;
      if (n == exp)
        return false;
    }
    const auto r = std::from_chars(s_.data(), s_.data() + n, v);
    if (r.ec != std::errc() || r.ptr != s_.data() + n) // an integer field holding 1.5 or 1e3: not ours
      return false;
    s_.remove_prefix(n);
    return true;
  }
  bool uint(std::uint64_t& v) { return parse_with_from_chars(v); }
  bool integer(long long& v) { return parse_with_from_chars(v); }
  bool number(double& v) { return parse_with_from_chars(v) && std::isfinite(v); }

  std::string_view s_;
};

std::optional<trace> parse_own_layout(std::string_view text, const std::string& source) {
  constexpr std::string_view head = "{\"displayTimeUnit\":\"ms\",\"otherData\":";
  constexpr std::string_view list = ",\n\"traceEvents\":[\n";
  if (text.substr(0, head.size()) != head)
    return std::nullopt;
  const auto list_at = text.find(list);
  if (list_at == std::string_view::npos)
    return std::nullopt;
  try {
    trace t;
    const json other = json::parse(text.substr(head.size(), list_at - head.size()));
    if (!other.is_object())
      return std::nullopt;
    read_other_data(other, t, source);
    std::size_t pos = list_at + list.size(), i = 0;
    bool closed = false;
    while (pos < text.size()) {
      auto nl = text.find('\n', pos);
      if (nl == std::string_view::npos)
        nl = text.size();
      std::string_view line = text.substr(pos, nl - pos);
      pos = nl + 1;
      if (line == "]}") {
        closed = true;
        break;
      }
      if (!line.empty() && line.back() == ',')
        line.remove_suffix(1);
      trace_event ev;
      if (own_line(line).event(ev)) {
        t.num_ranks = std::max(t.num_ranks, ev.rank + 1);
        t.events.push_back(ev);
      } else {
        add_event(json::parse(line), t, [&] { return source + ": traceEvents[" + std::to_string(i) + "]"; });
      }
      ++i;
    }
    if (!closed || text.find_first_not_of(" \t\r\n", pos) != std::string_view::npos || t.events.empty())
      return std::nullopt;
    check_rank_count(t, i, source);
    return t;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

} // namespace

namespace {
// torch.profiler's export_chrome_trace, one file per process: its top level says so (distributedInfo,
// baseTimeNanoseconds, deviceProperties or schemaVersion beside traceEvents).
bool is_torch_profiler_trace(const json& j) {
  return j.is_object() && j.contains("traceEvents") &&
         (j.contains("distributedInfo") || j.contains("baseTimeNanoseconds") || j.contains("deviceProperties") ||
          j.contains("schemaVersion"));
}

// The pipeline actions of one process's torch.profiler trace, as torch.distributed.pipelining marks them with
// record_function: "PP:2F0" (its multi-stage runtime; SEND/RECV too), or "Forward i" / "Backward i" (its
// single-stage GPipe, on the process's own stage: the rank, so a pipeline without data parallelism). Every other range (aten ops, UNSHARD,
// REDUCE_GRAD...) is left out. The rank is distributedInfo's; times are the profiler's base time plus ts.
trace read_torch_profiler(const json& j, const std::string& source) {
  trace t;
  int rank = 0;
  if (j.contains("distributedInfo") && j["distributedInfo"].is_object() && j["distributedInfo"].contains("rank"))
    rank = static_cast<int>(json_integer(j["distributedInfo"]["rank"], source + ": distributedInfo.rank", 0, limits::max_ranks - 1));
  t.num_ranks = rank + 1;
  const double base = j.contains("baseTimeNanoseconds")
                          ? json_number(j["baseTimeNanoseconds"], source + ": baseTimeNanoseconds", "number of nanoseconds", 0,
                                        max_trace_us * 1000) / 1000
                          : 0.0;
  const auto& events = j["traceEvents"];
  if (!events.is_array())
    throw input_error(source + ": \"traceEvents\" must be an array");
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    const auto is = [&](const char* key, std::string_view want, bool absent_ok) {
      const auto it = e.find(key);
      if (it == e.end())
        return absent_ok;
      return it->is_string() && it->get_ref<const std::string&>() == want;
    };
    if (!e.is_object() || !is("ph", "X", false) || !e.contains("name") || !e["name"].is_string() ||
        !is("cat", "user_annotation", true)) // gpu_user_annotation repeats a range on the device
      continue;
    const std::string& name = e["name"].get_ref<const std::string&>();
    action a;
    try {
      if (name.rfind("PP:", 0) == 0) {
        a = parse_action(name.substr(3));
      } else if (name.rfind("Forward ", 0) == 0 || name.rfind("Backward ", 0) == 0) {
        const bool fwd = name[0] == 'F';
        const std::string mb = name.substr(fwd ? 8 : 9);
        a = parse_action(std::to_string(rank) + (fwd ? "F" : "B") + mb);
      } else {
        continue;
      }
    } catch (const input_error&) {
      continue; // UNSHARD, RESHARD, an overlapped (F;B) pair: not one action of ours
    }
    if (a.kind == action_kind::reduce_grad)
      continue; // torch's REDUCE_GRAD range is its own thread's work around the collective, not our posting-to-done

    const std::string where = source + ": traceEvents[" + std::to_string(i) + "] (" + name + ")";
    if (!e.contains("ts") || !e.contains("dur"))
      throw input_error(where + ": fields \"ts\" and \"dur\" must be numbers of microseconds");
    trace_event ev;
    ev.act = a;
    ev.rank = rank;
    ev.start_us = base + json_number(e["ts"], where + ": field \"ts\"", "number of microseconds", -max_trace_us, max_trace_us);
    ev.end_us = ev.start_us + json_number(e["dur"], where + ": field \"dur\"", "number of microseconds", 0, max_trace_us);
    if (!(std::abs(ev.start_us) <= max_trace_us && std::abs(ev.end_us) <= max_trace_us))
      throw input_error(where + ": baseTimeNanoseconds plus ts and dur is beyond 1e18 microseconds");
    ev.source = event_source::measured;
    t.events.push_back(ev);
  }
  if (t.events.empty())
    throw input_error(source + ": a torch.profiler trace without pipeline actions (torch.distributed.pipelining's "
                               "record_function ranges \"PP:2F0\" or \"Forward 0\" / \"Backward 0\")");
  check_rank_count(t, events.size(), source);
  t.run = "torch.profiler, rank " + std::to_string(rank);
  return t;
}
} // namespace

trace parse_chrome_json(std::string_view text, const std::string& source) {
  if (auto fast = parse_own_layout(text, source))
    return std::move(*fast);
  const json j = parse_json(text, source);
  if (is_torch_profiler_trace(j))
    return read_torch_profiler(j, source);
  trace t;
  const json* events = nullptr;
  if (j.is_array()) {
    events = &j; // the JSON-array form of the format
  } else if (j.is_object() && j.contains("traceEvents") && j["traceEvents"].is_array()) {
    events = &j["traceEvents"];
    if (j.contains("otherData") && j["otherData"].is_object())
      read_other_data(j["otherData"], t, source);
  } else {
    throw input_error(source + ": expected an object with a \"traceEvents\" array");
  }
  t.events.reserve(events->size());
  std::size_t i = 0;
  try {
    for (; i < events->size(); ++i)
      add_event((*events)[i], t, [&] { return source + ": traceEvents[" + std::to_string(i) + "]"; });
  } catch (const json::exception& e) { // a field of an unexpected type that add_event reads leniently
    throw input_error(source + ": traceEvents[" + std::to_string(i) + "]: " + e.what());
  }
  if (t.events.empty())
    throw input_error(source + ": no pipeline actions in the trace");
  check_rank_count(t, events->size(), source);
  return t;
}

trace load_chrome_trace(const std::string& path) {
  return parse_chrome_json(read_text_file(path, path + ": cannot open trace file"), path);
}

std::string to_json_line(const trace_event& e) {
  std::string out;
  out.reserve(192);
  append_event_json(out, e);
  out += '\n';
  return out;
}

std::string to_json_line(const memory_sample& m) {
  std::string out;
  out.reserve(96);
  append_memory_json(out, m);
  out += '\n';
  return out;
}

std::string to_json_line(const trace_marker& m) { return marker_json(m).dump() + "\n"; }

void parse_json_line(std::string_view line, trace& t, const std::string& source) {
  const json j = parse_json(line, source);
  try {
    add_event(j, t, [&] { return source; });
  } catch (const json::exception& e) {
    throw input_error(source + ": " + e.what());
  }
}

} // namespace pippy
