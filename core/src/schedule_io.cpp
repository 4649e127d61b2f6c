#include "pippy/core/schedule_io.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pippy/core/error.hpp"
#include "pippy/core/json_input.hpp"
#include "pippy/core/limits.hpp"
#include "pippy/core/text_file.hpp"

namespace pippy {
namespace {

// The shape that the actions imply; throws naming `source` when stages sit neither looped nor V-shaped.
pipeline_shape infer_shape(const std::vector<std::vector<action>>& ranks, const std::string& source) {
  int max_stage = -1, max_mb = -1;
  for (const auto& list : ranks)
    for (const auto& a : list) {
      max_stage = std::max(max_stage, a.stage);
      max_mb = std::max(max_mb, a.microbatch);
    }
  if (ranks.empty() || max_stage < 0)
    throw input_error(source + ": no actions");
  if (max_mb < 0)
    throw input_error(source + ": no action names a micro-batch");
  // Sizes come from numbers in the file: bound them before computing with them or sizing anything.
  if (ranks.size() > static_cast<std::size_t>(limits::max_ranks))
    throw input_error(source + ": " + std::to_string(ranks.size()) + " ranks; at most " +
                      std::to_string(limits::max_ranks) + " are allowed");
  if (max_stage >= limits::max_stages)
    throw input_error(source + ": stage " + std::to_string(max_stage) + " is beyond the " +
                      std::to_string(limits::max_stages) + " stages a schedule may have");
  if (max_mb >= limits::max_microbatches)
    throw input_error(source + ": micro-batch " + std::to_string(max_mb) + " is beyond the " +
                      std::to_string(limits::max_microbatches) + " micro-batches a schedule may have");
  const int R = static_cast<int>(ranks.size());
  const int S = max_stage + 1;
  if (S % R != 0)
    throw input_error(source + ": " + std::to_string(S) + " stages do not divide evenly over " + std::to_string(R) +
                      " ranks");
  for (auto placement : {placement_style::looped, placement_style::v_shape}) {
    pipeline_shape shape{.num_ranks = R, .stages_per_rank = S / R, .num_microbatches = max_mb + 1,
                         .placement = placement};
    if (placement == placement_style::v_shape && shape.stages_per_rank % 2 != 0)
      continue;
    bool fits = true;
    for (int r = 0; r < R && fits; ++r)
      for (const auto& a : ranks[static_cast<std::size_t>(r)])
        fits = fits && shape.rank_of(a.stage) == r;
    if (fits)
      return shape;
  }
  throw input_error(source + ": stages sit on ranks neither looped (stage s on rank s mod " + std::to_string(R) +
                    ") nor V-shaped");
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\"");
  if (b == std::string_view::npos)
    return {};
  const auto e = s.find_last_not_of(" \t\r\"");
  return std::string(s.substr(b, e - b + 1));
}

// One CSV cell: an action, or PyTorch's "(0F7;7B3)OVERLAP_F_B", an F and a B run together, which we
// run one after the other as PyTorch's runtime does unless an overlap function is registered.
std::vector<action> parse_cell(const std::string& cell) {
  if (cell.front() != '(')
    return {parse_action(cell)};
  const auto close = cell.find(')');
  if (close == std::string::npos || cell.substr(close + 1) != "OVERLAP_F_B")
    throw input_error("cell '" + cell + "': expected (F;B)OVERLAP_F_B");
  std::vector<action> out;
  std::size_t start = 1;
  while (start < close) {
    auto semi = std::min(cell.find(';', start), close);
    out.push_back(parse_action(cell.substr(start, semi - start)));
    start = semi + 1;
  }
  return out;
}

} // namespace

std::string to_csv(const schedule& s) {
  std::string out;
  for (const auto& list : s.ranks) {
    for (std::size_t i = 0; i < list.size(); ++i)
      out += (i ? "," : "") + to_string(list[i]);
    out += '\n';
  }
  return out;
}

schedule schedule_from_csv(std::string_view text, const std::string& source) {
  schedule s;
  s.name = source;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto eol = text.find('\n', pos);
    if (eol == std::string_view::npos)
      eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (trim(line).empty() || trim(line).front() == '#')
      continue; // blank lines separate nothing (a rank with no actions would make no sense); # starts a comment
    std::vector<action> list;
    std::size_t col = 0, start = 0;
    while (start <= line.size()) {
      auto comma = line.find(',', start);
      if (comma == std::string_view::npos)
        comma = line.size();
      ++col;
      const std::string cell = trim(line.substr(start, comma - start));
      start = comma + 1;
      if (cell.empty() || cell == "None" || cell == "_")
        continue;
      try {
        for (const auto& a : parse_cell(cell))
          list.push_back(a);
      } catch (const input_error& e) {
        throw input_error(source + ":" + std::to_string(line_no) + ", column " + std::to_string(col) + ": " + e.what());
      }
    }
    s.ranks.push_back(std::move(list));
  }
  s.shape = infer_shape(s.ranks, source);
  return s;
}

std::string to_json(const schedule& s) {
  nlohmann::json j;
  j["name"] = s.name;
  j["ranks"] = s.shape.num_ranks;
  j["stages_per_rank"] = s.shape.stages_per_rank;
  j["microbatches"] = s.shape.num_microbatches;
  j["placement"] = std::string(to_string(s.shape.placement));
  auto& acts = j["actions"] = nlohmann::json::array();
  for (const auto& list : s.ranks) {
    auto row = nlohmann::json::array();
    for (const auto& a : list)
      row.push_back(to_string(a));
    acts.push_back(std::move(row));
  }
  return j.dump(1) + "\n";
}

schedule schedule_from_json(std::string_view text, const std::string& source) {
  const nlohmann::json j = parse_json(text, source);
  if (!j.is_object())
    throw input_error(source + ": expected a JSON object with \"actions\"");
  reject_unknown_keys(j, {"name", "ranks", "stages_per_rank", "microbatches", "placement", "actions"}, source + ": ");
  // The sizes are implied by the actions; a field that gives one must agree with them.
  auto check_size = [&](const char* name, int implied, std::int64_t bound) {
    if (!j.contains(name))
      return;
    const auto v = json_integer(j[name], source + ": field \"" + name + "\"", 1, bound);
    if (v != implied)
      throw input_error(source + ": field \"" + std::string(name) + "\" is " + std::to_string(v) +
                        " but the actions imply " + std::to_string(implied));
  };
  if (!j.contains("actions") || !j["actions"].is_array())
    throw input_error(source + ": field \"actions\" must be an array of rank lists");
  schedule s;
  s.name = source;
  if (j.contains("name")) {
    if (!j["name"].is_string())
      throw input_error(source + ": field \"name\" must be a string");
    s.name = j["name"].get<std::string>();
  }
  const auto& rows = j["actions"];
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r].is_array())
      throw input_error(source + ": actions[" + std::to_string(r) + "] must be an array of action strings");
    std::vector<action> list;
    for (std::size_t i = 0; i < rows[r].size(); ++i) {
      const auto& cell = rows[r][i];
      const std::string where = source + ": actions[" + std::to_string(r) + "][" + std::to_string(i) + "]";
      if (cell.is_null())
        continue;
      if (!cell.is_string())
        throw input_error(where + " must be a string such as \"0F1\"");
      try {
        list.push_back(parse_action(cell.get<std::string>()));
      } catch (const input_error& e) {
        throw input_error(where + ": " + e.what());
      }
    }
    s.ranks.push_back(std::move(list));
  }
  s.shape = infer_shape(s.ranks, source);
  check_size("ranks", s.shape.num_ranks, limits::max_ranks);
  check_size("stages_per_rank", s.shape.stages_per_rank, limits::max_stages);
  check_size("microbatches", s.shape.num_microbatches, limits::max_microbatches);
  if (j.contains("placement")) {
    if (!j["placement"].is_string() || (j["placement"] != "looped" && j["placement"] != "v"))
      throw input_error(source + ": field \"placement\" must be \"looped\" or \"v\"");
    s.shape.placement = j["placement"] == "v" ? placement_style::v_shape : placement_style::looped;
  }
  return s;
}

schedule load_schedule_file(const std::string& path) {
  const std::string text = read_text_file(path, path + ": cannot open schedule file");
  const bool is_json = path.size() >= 5 && path.substr(path.size() - 5) == ".json";
  return is_json ? schedule_from_json(text, path) : schedule_from_csv(text, path);
}

} // namespace pippy
