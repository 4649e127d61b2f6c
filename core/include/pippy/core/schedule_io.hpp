#pragma once
#include <string>
#include <string_view>

#include "pippy/core/schedule.hpp"
#include "pippy/core/validate.hpp"

namespace pippy {

// CSV as torchtitan's custom schedules write it: one row per rank, one action per cell in PyTorch's
// spelling ("0F1", "1SEND_B0"), an empty cell for nothing, a line starting with '#' a comment. The shape is read off the actions: stages and
// micro-batches from the largest indices, the placement (looped or V) from where the stages sit.
std::string to_csv(const schedule& s);
// `source` names the input in errors ("my.csv:3, column 2: ...").
schedule schedule_from_csv(std::string_view text, const std::string& source);

// JSON: {"name", "ranks", "stages_per_rank", "microbatches", "placement": "looped"|"v",
//        "actions": [["0F0", ...], ...]}.
std::string to_json(const schedule& s);
schedule schedule_from_json(std::string_view text, const std::string& source);

// Reads a schedule file by extension (.csv or .json); errors name the file.
schedule load_schedule_file(const std::string& path);


} // namespace pippy
