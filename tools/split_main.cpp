// pippy-split: what `pippy split` runs (the pippy command has no torch; it execs this program).
//   pippy split MODEL.pt --input SHAPE[:DTYPE[:HIGH]] ... (--stages N [--balance params|time] |
//               --split-at NAME=begin|end ...) [--out DIR] [--microbatch-rows R] [--seed S]
// Splits a TorchScript file with the compiler, traced on one seeded synthetic micro-batch per --input, and
// prints the pipe: each stage's modules, parameter count and bytes, and the tensors crossing its boundaries.
// --out DIR writes DIR/stage{N}.pt (TorchScript: forward(boundary inputs) -> tuple of boundary outputs,
// parameters and buffers under their original names) and DIR/pipe.json (how the stages connect), so that any
// runtime, torch.jit.load in Python included, can run the stages.
// Exit status: 0, 2 for a bad command line or input (bad file, --input, split point), 1 otherwise.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include <torch/csrc/jit/passes/shape_analysis.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pippy/compiler/compiler.hpp"
#include "pippy/compiler/model_file.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/text_file.hpp"

using namespace pippy;
using torch::jit::Graph;
using torch::jit::Value;

namespace {

struct options {
  std::string model;
  std::vector<std::string> inputs;
  split_request split;
  std::string out;
  int64_t microbatch_rows = 0;  // 0: each --input's own first size
  uint64_t seed = 0;
};

// The split and what it came from, kept together for printing and pipe.json.
struct split_result {
  std::vector<input_spec> specs;
  traced_model traced;
  pippy::pipe p;
};

std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kLong: return "int64";
    case torch::kInt: return "int32";
    case torch::kShort: return "int16";
    case torch::kChar: return "int8";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: {
      std::string s = c10::toString(d);
      std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      return s;
    }
  }
}

std::string shape_text(const std::vector<int64_t>& sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

std::string source_text(const value_source& s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// 1234567 -> "1,234,567"
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string bytes_text(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

// What a stage holds, from its registered parameters and buffers.
struct stage_state {
  std::vector<std::string> names;  // canonical qualified names, graph-input order
  std::set<std::string> param_names;
  int64_t param_numel = 0, param_bytes = 0, buffer_numel = 0, buffer_bytes = 0;
};

stage_state state_of(const graph_stage& st) {
  stage_state s;
  s.names = st.tensor_names();
  for (const auto& item : st.named_parameters(true)) {
    s.param_names.insert(item.key());
    s.param_numel += item.value().numel();
    s.param_bytes += item.value().numel() * static_cast<int64_t>(item.value().element_size());
  }
  for (const auto& item : st.named_buffers(true)) {
    s.buffer_numel += item.value().numel();
    s.buffer_bytes += item.value().numel() * static_cast<int64_t>(item.value().element_size());
  }
  return s;
}

// The stage's modules: the largest submodules whose tensors the stage holds all of, then the tensors it
// holds outside such a module (a root-level class token, one half of a tied pair), in the model's order.
// Why not every module path: a stage of a ResNet would list every conv and norm of its blocks.
std::vector<std::string> stage_modules(const traced_model& t, const std::vector<std::string>& held_names) {
  std::vector<std::string> all = t.param_names;
  all.insert(all.end(), t.buffer_names.begin(), t.buffer_names.end());
  const std::set<std::string> held(held_names.begin(), held_names.end());
  // module path -> (first position in the model's order, every tensor under it held)
  std::map<std::string, std::pair<size_t, bool>> modules;
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t dot = all[i].find('.'); dot != std::string::npos; dot = all[i].find('.', dot + 1)) {
      auto [it, fresh] = modules.try_emplace(all[i].substr(0, dot), i, true);
      it->second.second = it->second.second && held.count(all[i]) != 0;
    }
  auto covering = [&](const std::string& name) {  // the outermost fully held module containing name
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
      if (modules.at(name.substr(0, dot)).second) return name.substr(0, dot);
    return name;
  };
  std::vector<std::pair<size_t, std::string>> listed;
  std::set<std::string> seen;
  for (size_t i = 0; i < all.size(); ++i) {
    if (held.count(all[i]) == 0) continue;
    const std::string m = covering(all[i]);
    if (seen.insert(m).second) listed.emplace_back(m == all[i] ? i : modules.at(m).first, m);
  }
  std::sort(listed.begin(), listed.end());
  std::vector<std::string> out;
  for (auto& [pos, m] : listed) out.push_back(std::move(m));
  return out;
}

// "blocks.1, blocks.2, blocks.3" -> "blocks.{1..3}": numbered siblings in runs of three or more.
std::vector<std::string> compressed(const std::vector<std::string>& modules) {
  auto split_number = [](const std::string& m) -> std::pair<std::string, long> {
    const size_t dot = m.rfind('.');
    if (dot == std::string::npos || dot + 1 == m.size()) return {m, -1};
    const std::string tail = m.substr(dot + 1);
    if (tail.size() > 9 || !std::all_of(tail.begin(), tail.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return {m, -1};
    return {m.substr(0, dot + 1), std::stol(tail)};
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < modules.size();) {
    const auto [prefix, first] = split_number(modules[i]);
    size_t j = i + 1;
    while (first >= 0 && j < modules.size() && split_number(modules[j]) == std::make_pair(prefix, first + long(j - i))) ++j;
    if (j - i >= 3) {
      out.push_back(prefix + "{" + std::to_string(first) + ".." + std::to_string(first + long(j - i) - 1) + "}");
    } else {
      out.insert(out.end(), modules.begin() + long(i), modules.begin() + long(j));
    }
    i = j;
  }
  return out;
}

// "  modules  a, b, c" wrapped at 100 columns, continuation lines under the first item.
std::string module_lines(const std::vector<std::string>& items) {
  const std::string head = "  modules  ";
  std::string out = head, line = head;
  if (items.empty()) return head + "(none)\n";
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string item = items[i] + (i + 1 < items.size() ? "," : "");
    if (line.size() > head.size() && line.size() + 1 + item.size() > 100) {
      out += "\n" + std::string(head.size(), ' ');
      line = std::string(head.size(), ' ');
    } else if (line.size() > head.size()) {
      out += " ";
      line += " ";
    }
    out += item;
    line += item;
  }
  return out + "\n";
}

// Who reads output k of stage s: later stages and the pipe's outputs.
std::vector<std::string> consumers(const pippy::pipe& p, int s, int k) {
  std::vector<std::string> c;
  for (int t = 0; t < p.num_stages(); ++t)
    for (const auto& src : p.stage_inputs(t))
      if (src == value_source{s, k}) {
        c.push_back("stage" + std::to_string(t));
        break;
      }
  for (size_t j = 0; j < p.outputs().size(); ++j)
    if (p.outputs()[j] == value_source{s, k}) c.push_back("output[" + std::to_string(j) + "]");
  return c;
}

const graph_stage& graph_of(const pippy::pipe& p, int s) { return dynamic_cast<const graph_stage&>(*p.stage(s)); }

std::string split_description(const options& o) {
  if (o.split.stages > 0) return "--stages " + std::to_string(o.split.stages) + " --balance " + o.split.balance;
  std::string s;
  for (const auto& at : o.split.split_at) s += (s.empty() ? "--split-at " : " --split-at ") + at;
  return s;
}

void print_pipe(std::ostream& os, const options& o, const split_result& r) {
  const auto& p = r.p;
  const auto& t = r.traced;
  os << o.model << ": " << p.num_stages() << " stages (" << split_description(o) << ")\n";
  for (size_t i = 0; i < t.example_inputs.size(); ++i)
    os << "input[" << i << "]: " << dtype_name(t.example_inputs[i].scalar_type()) << " "
       << shape_text(t.example_inputs[i].sizes().vec()) << " (one micro-batch, seed " << o.seed << ")\n";
  int64_t numel = 0, bytes = 0;
  for (const auto& x : t.params) {
    numel += x.numel();
    bytes += x.numel() * static_cast<int64_t>(x.element_size());
  }
  os << "model: " << grouped(numel) << " parameters (" << bytes_text(bytes) << ")\n";
  for (int s = 0; s < p.num_stages(); ++s) {
    const auto& st = graph_of(p, s);
    const auto state = state_of(st);
    os << "\nstage " << s << ": " << grouped(state.param_numel) << " parameters (" << bytes_text(state.param_bytes) << ")";
    if (state.buffer_numel > 0) os << ", buffers " << grouped(state.buffer_numel) << " (" << bytes_text(state.buffer_bytes) << ")";
    os << "\n" << module_lines(compressed(stage_modules(t, state.names)));
    if (st.uses_batch_statistics())
      os << "  note     BatchNorm in training mode: each micro-batch is normalised with its own statistics\n";
    // One row per boundary tensor, columns aligned within the stage.
    std::vector<std::array<std::string, 4>> rows;
    const auto in_meta = p.stage_input_meta(s);
    for (size_t i = 0; i < in_meta.size(); ++i)
      rows.push_back({"in[" + std::to_string(i) + "]", "from " + source_text(p.stage_inputs(s)[i]),
                      dtype_name(in_meta[i].dtype), shape_text(in_meta[i].sizes)});
    const auto out_meta = p.stage_output_meta(s);
    for (size_t k = 0; k < out_meta.size(); ++k) {
      std::string to;
      for (const auto& c : consumers(p, s, static_cast<int>(k))) to += (to.empty() ? "to " : ", ") + c;
      rows.push_back({"out[" + std::to_string(k) + "]", to, dtype_name(out_meta[k].dtype), shape_text(out_meta[k].sizes)});
    }
    std::array<size_t, 4> width{};
    for (const auto& row : rows)
      for (size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], row[c].size());
    for (const auto& row : rows) {
      std::string line = " ";
      for (size_t c = 0; c < 4; ++c) line += " " + row[c] + (c < 3 ? std::string(width[c] - row[c].size() + 1, ' ') : "");
      os << line << "\n";
    }
  }
  os << "\noutputs: ";
  for (size_t j = 0; j < p.outputs().size(); ++j) os << (j ? ", " : "") << "output[" << j << "] = " << p.outputs()[j];
  os << "\n";
  for (const auto& tp : p.tied_parameters()) {
    os << "tied: " << tp.name;
    for (const auto& a : tp.aliases) os << " = " << a;
    os << " held by stages";
    for (size_t i = 0; i < tp.stages.size(); ++i) os << (i ? ", " : " ") << tp.stages[i];
    os << " (sum their gradients before the optimizer step)\n";
  }
  if (!t.trace_note.empty()) os << "note: " << t.trace_note << "\n";
  if (t.sizes_recorded)
    os << "sizes: computed from the inputs (aten::size): the stages accept other batch sizes and sequence lengths, "
          "except where the Python code turned a size into a constant while tracing\n";
  else
    os << "sizes: fixed by the trace: feed the stages micro-batches shaped exactly like the example\n";
}

// --- Export ---------------------------------------------------------------------------------------------

// Stage s as a TorchScript module: its parameters and buffers registered under their original qualified
// names (nested submodules), forward(self, boundary inputs...) -> tuple of boundary outputs, running the
// stage's own graph. Tensors are copies, so the file is what the split holds now.
torch::jit::Module export_stage(const pippy::pipe& p, int s) {
  const auto& st = graph_of(p, s);
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  const std::string prefix = "__torch__.pippy_split.stage" + std::to_string(s);
  torch::jit::Module root(c10::QualifiedName(prefix + ".Stage"), cu);
  std::map<std::string, torch::jit::Module> submodules{{"", root}};
  std::set<std::string> params;
  for (const auto& item : st.named_parameters(true)) params.insert(item.key());
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : st.named_parameters(true)) tensors[item.key()] = item.value();
  for (const auto& item : st.named_buffers(true)) tensors[item.key()] = item.value();
  for (const auto& name : st.tensor_names()) {
    std::string path;
    torch::jit::Module* m = &submodules.at("");
    size_t a = 0;
    for (size_t dot = name.find('.'); dot != std::string::npos; a = dot + 1, dot = name.find('.', a)) {
      const std::string part = name.substr(a, dot - a);
      path += (path.empty() ? "" : ".") + part;
      auto it = submodules.find(path);
      if (it == submodules.end()) {
        std::string cls = path;
        std::replace(cls.begin(), cls.end(), '.', '_');
        // Mangled on a clash ("a_b" and "a.b"), so every class name in the file is unique.
        torch::jit::Module sub(c10::QualifiedName(prefix + ".Module_" + cls), cu, /*shouldMangle=*/true);
        m->register_module(part, sub);
        it = submodules.emplace(path, sub).first;
      }
      m = &it->second;
    }
    const torch::Tensor x = tensors.at(name).detach().clone();
    if (params.count(name)) {
      m->register_parameter(name.substr(a), x.set_requires_grad(tensors.at(name).requires_grad()), false);
    } else {
      m->register_buffer(name.substr(a), x);
    }
  }

  auto g = std::make_shared<Graph>();
  g->addInput("self")->setType(root.type());
  std::vector<Value*> args;
  const auto& sources = p.stage_inputs(s);
  for (const auto& src : sources)
    args.push_back(g->addInput(src.stage < 0 ? "input_" + std::to_string(src.index)
                                             : "stage" + std::to_string(src.stage) + "_" + std::to_string(src.index))
                       ->setType(c10::TensorType::get()));
  std::map<std::string, Value*> attr;  // path -> its GetAttr value, one chain per submodule
  attr[""] = g->inputs()[0];
  for (const auto& name : st.tensor_names()) {
    std::string path;
    Value* v = attr.at("");
    size_t a = 0;
    for (size_t dot = name.find('.');; a = dot + 1, dot = name.find('.', a)) {
      const std::string part = name.substr(a, dot == std::string::npos ? std::string::npos : dot - a);
      path += (path.empty() ? "" : ".") + part;
      auto it = attr.find(path);
      if (it == attr.end()) it = attr.emplace(path, g->insertGetAttr(v, part)).first;
      v = it->second;
      if (dot == std::string::npos) break;
    }
    args.push_back(v);
  }
  // Graph::copy is not const but leaves the graph as it was.
  auto body = const_cast<Graph&>(st.graph()).copy();
  const auto outs = torch::jit::insertGraph(*g, *body, args);
  g->registerOutput(g->insertNode(g->createTuple(outs))->output());
  // The traced sizes would make the method's signature demand exactly the example's shapes.
  torch::jit::EraseShapeInformation(g);
  auto* fn = cu->create_function(c10::QualifiedName(*root.type()->name(), "forward"), g);
  root.type()->addMethod(fn);
  return root;
}

nlohmann::ordered_json meta_json(const tensor_meta& m) {
  return {{"shape", m.sizes}, {"dtype", dtype_name(m.dtype)}, {"requires_grad", m.requires_grad}};
}

nlohmann::ordered_json source_json(const value_source& s) {
  nlohmann::ordered_json j;
  if (s.stage < 0) {
    j["source"] = "input";
  } else {
    j["source"] = "stage";
    j["stage"] = s.stage;
  }
  j["index"] = s.index;
  return j;
}

nlohmann::ordered_json pipe_json(const options& o, const split_result& r) {
  const auto& p = r.p;
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (int s = 0; s < p.num_stages(); ++s) {
    const auto& st = graph_of(p, s);
    const auto state = state_of(st);
    nlohmann::ordered_json inputs = nlohmann::ordered_json::array(), outputs = nlohmann::ordered_json::array();
    const auto in_meta = p.stage_input_meta(s);
    for (size_t i = 0; i < in_meta.size(); ++i) {
      auto in = source_json(p.stage_inputs(s)[i]);
      in.update(meta_json(in_meta[i]));
      inputs.push_back(std::move(in));
    }
    for (const auto& m : p.stage_output_meta(s)) outputs.push_back(meta_json(m));
    std::vector<std::string> param_names, buffer_names;
    for (const auto& n : state.names) (state.param_names.count(n) ? param_names : buffer_names).push_back(n);
    stages.push_back({{"file", "stage" + std::to_string(s) + ".pt"},
                      {"inputs", inputs},
                      {"outputs", outputs},
                      {"parameters", state.param_numel},
                      {"parameter_bytes", state.param_bytes},
                      {"buffer_bytes", state.buffer_bytes},
                      {"modules", stage_modules(r.traced, state.names)},
                      {"parameter_names", param_names},
                      {"buffer_names", buffer_names},
                      {"batch_statistics", st.uses_batch_statistics()}});
  }
  nlohmann::ordered_json outputs = nlohmann::ordered_json::array();
  for (const auto& src : p.outputs()) outputs.push_back(source_json(src));
  nlohmann::ordered_json tied = nlohmann::ordered_json::array();
  for (const auto& tp : p.tied_parameters())
    tied.push_back({{"name", tp.name}, {"aliases", tp.aliases}, {"stages", tp.stages}});
  nlohmann::ordered_json inputs = nlohmann::ordered_json::array();
  for (size_t i = 0; i < r.specs.size(); ++i) {
    const auto& x = r.traced.example_inputs[i];
    nlohmann::ordered_json in = {{"spec", o.inputs[i]}, {"shape", x.sizes().vec()}, {"dtype", dtype_name(x.scalar_type())}};
    if (!at::isFloatingType(r.specs[i].dtype)) in["high"] = r.specs[i].high;
    inputs.push_back(in);
  }
  nlohmann::ordered_json j = {{"model", o.model},
                      {"inputs", inputs},
                      {"seed", o.seed},
                      {"split", split_description(o)},
                      {"routing", p.routing() == skip_routing::pass_through ? "pass_through" : "direct"},
                      {"sizes_recorded", r.traced.sizes_recorded},
                      {"stages", stages},
                      {"outputs", outputs},
                      {"tied", tied}};
  if (!r.traced.trace_note.empty()) j["trace_note"] = r.traced.trace_note;
  return j;
}

void write_out(const options& o, const split_result& r) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw input_error("--out " + o.out + ": cannot create the directory (" + ec.message() + ")");
  // Every stage is serialized before anything is written: a stage that cannot be exported leaves DIR as it was.
  std::vector<std::string> files;
  for (int s = 0; s < r.p.num_stages(); ++s) {
    std::ostringstream bytes;
    export_stage(r.p, s).save(bytes);
    files.push_back(bytes.str());
  }
  for (size_t s = 0; s < files.size(); ++s) {
    const std::string path = (fs::path(o.out) / ("stage" + std::to_string(s) + ".pt")).string();
    write_file_atomically(path, [&](std::ostream& out) { out << files[s]; });
    std::cout << "wrote " << path << "\n";
  }
  const std::string path = (fs::path(o.out) / "pipe.json").string();
  write_file_atomically(path, [&](std::ostream& out) { out << pipe_json(o, r).dump(2) << "\n"; });
  std::cout << "wrote " << path << "\n";
}

split_result split(const options& o) {
  if (o.inputs.empty()) throw input_error("--input: give the shape of one micro-batch of each model input");
  if (o.microbatch_rows < 0) throw input_error("--microbatch-rows must be positive");
  split_result r;
  for (const auto& text : o.inputs) r.specs.push_back(parse_input_spec(text));
  const std::vector<torch::Tensor> examples = example_inputs(r.specs, o.microbatch_rows, o.seed);
  std::error_code ec;
  if (std::filesystem::is_directory(o.model, ec)) throw input_error(o.model + ": a directory, not a TorchScript file");
  if (!o.out.empty() && std::filesystem::exists(o.out, ec) && !std::filesystem::is_directory(o.out, ec))
    throw input_error("--out " + o.out + ": exists and is not a directory");
  torch::jit::Module model = load_script_file(o.model, o.model);
  // Checks the request and the split point names against the model (an unknown one lists the nearest);
  // the points go to split_traced directly, since pipeline() would hide the traced model's notes.
  const auto popts = apply_split_request(model, o.split);
  clear_split_points(model._ivalue().get());
  const auto points = parse_split_points(o.split.split_at);
  // The forward failing on the examples is most often a wrong --input (shape, dtype, count).
  auto forward_fails = [&](const std::string& what) {
    std::string given;
    for (const auto& text : o.inputs) given += " --input " + text;
    return input_error(o.model + ": the forward fails on" + given + ": " + last_message_line(what));
  };
  try {
    r.traced = trace_script(model, examples);
  } catch (const input_error&) {
    throw;
  } catch (const c10::Error& e) {
    throw forward_fails(e.what_without_backtrace());
  } catch (const std::runtime_error& e) {  // the interpreter's JITException
    throw forward_fails(e.what());
  }
  r.p = split_traced(r.traced, popts, points);
  return r;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"pippy split: split a TorchScript model into pipeline stages, print them, optionally write them"};
  app.name("pippy split");
  app.add_option("model", o.model, "the model: a TorchScript file (torch.jit.save)")->required();
  app.add_option("--input", o.inputs, "SHAPE[:DTYPE[:HIGH]] of one micro-batch of each model input, in order "
                                      "(e.g. 8x3x32x32, 4x128:int64:50257); repeat for several inputs")
      ->required()
      ->allow_extra_args(false);  // one value per --input, so MODEL may follow it
  auto* stages = app.add_option("--stages", o.split.stages, "split automatically into N stages")
                     ->check(CLI::PositiveNumber);
  app.add_option("--balance", o.split.balance, "what the automatic split balances: params (bytes) or time")
      ->needs(stages);
  app.add_option("--split-at", o.split.split_at, "NAME=begin|end: a stage begins at / ends after submodule NAME")
      ->excludes(stages)
      ->allow_extra_args(false);
  app.add_option("--out", o.out, "write DIR/stage{N}.pt and DIR/pipe.json");
  app.add_option("--microbatch-rows", o.microbatch_rows, "rows of the traced micro-batch (default: each --input's first size)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the synthetic inputs");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    const auto r = split(o);
    print_pipe(std::cout, o, r);
    if (!o.out.empty()) write_out(o, r);
    return 0;
  } catch (const input_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
