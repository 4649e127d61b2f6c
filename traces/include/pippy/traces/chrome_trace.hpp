#pragma once
#include <iosfwd>
#include <string>
#include <string_view>

#include "pippy/traces/trace.hpp"

namespace pippy {

// Chrome trace-event JSON, the file Perfetto and chrome://tracing open: one complete event ("ph":"X")
// per action with pid = rank, tid = stream (0 compute, 1 communication), ts/dur in microseconds and
// args {stage, microbatch, kind, bytes, peer, source}; memory as counter events ("ph":"C"); markers as
// process-scoped instant events ("ph":"i", "s":"p", "cat":"marker", args {detail}).
std::string to_chrome_json(const trace& t);
void write_chrome_json(std::ostream& out, const trace& t);
// Writes to path.tmp and renames, so a reader never sees half a file. Throws input_error on failure.
void save_chrome_trace(const trace& t, const std::string& path);

// Reads our files and, tolerantly, PyTorch's pipeline traces (same "X" events with pid = rank, the
// action in the name as "2F0"). Throws input_error naming `source` and the event index on bad input.
trace parse_chrome_json(std::string_view text, const std::string& source);
trace load_chrome_trace(const std::string& path);

// The live stream: one JSON object per line, each the same object as one element of "traceEvents".
std::string to_json_line(const trace_event& e);
std::string to_json_line(const memory_sample& m);
std::string to_json_line(const trace_marker& m);
// Adds one line's event to t; throws input_error naming `source` on a malformed line.
void parse_json_line(std::string_view line, trace& t, const std::string& source);

} // namespace pippy
