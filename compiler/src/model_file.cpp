#include <pippy/compiler/model_file.hpp>
#include <pippy/core/error.hpp>
#include <pippy/core/text_file.hpp>

#include <map>
#include <sstream>

namespace pippy {

torch::jit::Module load_script_file(const std::string& path, const std::string& what) {
  // Read through read_text_file, which refuses a directory (torch::jit::load on one throws bad_alloc).
  std::istringstream in(read_text_file(path, what + ": cannot open the file"));
  try {
    return torch::jit::load(in);
  } catch (const c10::Error& e) {
    throw input_error(what + ": not a TorchScript file: " + e.what_without_backtrace());
  } catch (const std::exception& e) {  // a file that is not a zip archive can make the reader allocate wildly
    throw input_error(what + ": not a TorchScript file (" + e.what() + ")");
  }
}

namespace {
int64_t parse_count(const std::string& s, const std::string& text, const char* what) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < 1 || v > (int64_t{1} << 40))
    throw input_error("--input " + text + ": " + what + " '" + s + "' is not a positive integer");
  return v;
}
} // namespace

input_spec parse_input_spec(const std::string& text) {
  static const std::map<std::string, torch::Dtype> dtypes = {
      {"float32", torch::kFloat},  {"float", torch::kFloat},    {"float64", torch::kDouble}, {"float16", torch::kHalf},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kLong}, {"int32", torch::kInt},      {"int16", torch::kShort},
      {"int8", torch::kChar},      {"uint8", torch::kByte},     {"bool", torch::kBool}};
  input_spec spec;
  std::vector<std::string> fields;
  for (size_t a = 0;;) {
    const size_t b = text.find(':', a);
    fields.push_back(text.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  if (fields.size() > 3) throw input_error("--input " + text + ": expected SHAPE[:DTYPE[:HIGH]]");
  for (size_t a = 0;;) {
    const size_t b = fields[0].find('x', a);
    spec.sizes.push_back(parse_count(fields[0].substr(a, b == std::string::npos ? std::string::npos : b - a), text, "size"));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  if (spec.sizes.size() > 8) throw input_error("--input " + text + ": more than 8 dimensions");
  if (fields.size() > 1) {
    auto it = dtypes.find(fields[1]);
    if (it == dtypes.end())
      throw input_error("--input " + text + ": unknown dtype '" + fields[1] +
                        "' (float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool)");
    spec.dtype = it->second;
  }
  if (fields.size() > 2) {
    if (at::isFloatingType(spec.dtype)) throw input_error("--input " + text + ": HIGH is for integer inputs");
    spec.high = parse_count(fields[2], text, "HIGH");
  }
  return spec;
}

torch::Tensor synthetic_input(const input_spec& spec, int64_t rows, torch::Generator& gen) {
  auto sizes = spec.sizes;
  sizes[0] = rows;
  if (at::isFloatingType(spec.dtype)) return torch::randn(sizes, gen, torch::TensorOptions().dtype(spec.dtype));
  return torch::randint(0, spec.high, sizes, gen, torch::TensorOptions().dtype(spec.dtype));
}

std::vector<torch::Tensor> example_inputs(const std::vector<input_spec>& specs, int64_t rows, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<torch::Tensor> out;
  for (const auto& s : specs) out.push_back(synthetic_input(s, rows > 0 ? rows : s.sizes[0], gen));
  return out;
}

std::vector<std::pair<std::string, split_point>> parse_split_points(const std::vector<std::string>& split_at) {
  std::vector<std::pair<std::string, split_point>> points;
  for (const auto& text : split_at) {
    const size_t eq = text.rfind('=');
    const std::string where = eq == std::string::npos ? "" : text.substr(eq + 1);
    if (eq == 0 || (where != "begin" && where != "end"))
      throw input_error("--split-at " + text + ": expected NAME=begin or NAME=end");
    points.emplace_back(text.substr(0, eq), where == "begin" ? split_point::beginning : split_point::end);
  }
  return points;
}

pipeline_options apply_split_request(torch::jit::Module& model, const split_request& r) {
  if (r.stages > 0 && !r.split_at.empty()) throw input_error("--stages and --split-at exclude each other");
  if (r.stages <= 0 && r.split_at.empty()) throw input_error("give --stages N or --split-at NAME=begin|end");
  if (r.balance != "params" && r.balance != "time")
    throw input_error("--balance " + r.balance + ": expected params or time");
  clear_split_points(model._ivalue().get());
  if (!r.split_at.empty()) annotate_split_points(model, parse_split_points(r.split_at));
  return {.num_stages = r.stages,
          .balance_by = r.balance == "time" ? balance::measured_time : balance::parameter_bytes};
}

} // namespace pippy
