// pippy split on the vision models of tests/compiler/vision_models.py (the CTest fixture vision_models
// writes them): what it prints, the stage files it writes as Python loads and chains them
// (check_split_out.py), and its errors.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_runner.hpp"

namespace {

const std::string vision = PIPPY_VISION_DIR;

// Any command line, output and exit status like run_pippy.
cli_result run_command(const std::string& command) {
  cli_result result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

TEST_CASE("pippy split at a named submodule prints each stage's modules and boundary tensors", "[tools][split]") {
  const auto r = run_pippy("split " + vision + "/resnet_eval.pt --input 2x3x16x16 --split-at avgpool=begin");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // The whole printout: stage 1 is fc alone (16 x 10 + 10 parameters) fed layer2's [2, 16, 8, 8] output.
  CHECK(r.output == vision + "/resnet_eval.pt: 2 stages (--split-at avgpool=begin)\n"
                             "input[0]: float32 [2, 3, 16, 16] (one micro-batch, seed 0)\n"
                             "model: 11,122 parameters (43.4 KiB)\n"
                             "\n"
                             "stage 0: 10,952 parameters (42.8 KiB), buffers 250 (1.0 KiB)\n"
                             "  modules  stem, layer1, layer2\n"
                             "  in[0]   from input[0]  float32  [2, 3, 16, 16]\n"
                             "  out[0]  to stage1      float32  [2, 16, 8, 8]\n"
                             "\n"
                             "stage 1: 170 parameters (680 B)\n"
                             "  modules  fc\n"
                             "  in[0]   from stage0[0]  float32  [2, 16, 8, 8]\n"
                             "  out[0]  to output[0]    float32  [2, 10]\n"
                             "\n"
                             "outputs: output[0] = stage1[0]\n"
                             "sizes: computed from the inputs (aten::size): the stages accept other batch sizes and sequence lengths, "
            "except where the Python code turned a size into a constant while tracing\n");

  // The same split written out: stage 1 holds exactly fc's parameters.
  std::filesystem::remove_all("split_avgpool");
  const auto w = run_pippy("split " + vision + "/resnet_eval.pt --input 2x3x16x16 --split-at avgpool=begin --out split_avgpool");
  REQUIRE(w.exit_code == 0);
  const auto pipe = read_json("split_avgpool/pipe.json");
  REQUIRE(pipe["stages"].size() == 2);
  CHECK(pipe["stages"][1]["parameter_names"] == nlohmann::json({"fc.weight", "fc.bias"}));
  CHECK(pipe["stages"][1]["buffer_names"].empty());
  CHECK(pipe["stages"][1]["inputs"] == nlohmann::json::parse(R"([{"source": "stage", "stage": 0, "index": 0,
      "shape": [2, 16, 8, 8], "dtype": "float32", "requires_grad": true}])"));
  CHECK(pipe["stages"][0]["inputs"][0]["source"] == "input");
  CHECK(pipe["outputs"] == nlohmann::json::parse(R"([{"source": "stage", "stage": 1, "index": 0}])"));
  CHECK(pipe["stages"][1]["parameters"] == 170);
  CHECK(pipe["stages"][0]["modules"] == nlohmann::json({"stem", "layer1", "layer2"}));
}

TEST_CASE("pippy split --out writes stages that Python loads, chains and matches the model on another batch size",
          "[tools][split]") {
  for (const std::string model : {"resnet_eval", "vit"}) {
    INFO(model);
    const std::string dir = "split_" + model;
    std::filesystem::remove_all(dir);
    const std::string args = "split " + vision + "/" + model + ".pt --input 2x3x16x16 --stages 3 --out " + dir;
    const auto r = run_pippy(args);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    for (const std::string f : {"stage0.pt", "stage1.pt", "stage2.pt", "pipe.json"}) {
      INFO(f);
      CHECK(std::filesystem::is_regular_file(dir + "/" + f));
      CHECK(!std::filesystem::exists(dir + "/" + f + ".tmp"));
    }
    CHECK(!std::filesystem::exists(dir + "/stage3.pt"));
    const auto pipe = read_json(dir + "/pipe.json");
    CHECK(pipe["stages"].size() == 3);
    CHECK(pipe["model"] == vision + "/" + model + ".pt");
    CHECK(pipe["inputs"][0]["shape"] == nlohmann::json({2, 3, 16, 16}));

    // Python: torch.jit.load each stage, chain them as pipe.json says on a batch of 5 (traced with 2).
    const auto check = run_command(std::string(PIPPY_PYTHON) + " " + PIPPY_SPLIT_CHECKER + " " + vision + "/" + model +
                                   ".pt " + dir + " --batch 5");
    INFO(check.output);
    CHECK(check.exit_code == 0);
    CHECK_THAT(check.output, Catch::Contains("ok: 3 stages, batch 5"));

    // The same command prints and writes the same again.
    const std::string json_before = read_bytes(dir + "/pipe.json");
    const auto again = run_pippy(args);
    CHECK(again.exit_code == 0);
    CHECK(again.output == r.output);
    CHECK(read_bytes(dir + "/pipe.json") == json_before);
  }
}

TEST_CASE("pippy split names the nearest submodules for an unknown split point", "[tools][split]") {
  const auto r = run_pippy("split " + vision + "/resnet_eval.pt --input 2x3x16x16 --split-at layer3=begin");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::StartsWith("error: "));
  CHECK_THAT(r.output, Catch::Contains("'layer3'"));
  CHECK_THAT(r.output, Catch::Contains("nearest"));
  CHECK_THAT(r.output, Catch::Contains("layer2"));
}

TEST_CASE("pippy split rejects a bad file, --input, split or --out with exit status 2", "[tools][split]") {
  const std::string model = vision + "/resnet_eval.pt";
  struct bad_case {
    std::string args, message;
  };
  const std::vector<bad_case> cases = {
      {"split missing.pt --input 2x3x16x16 --stages 2", "error: missing.pt: cannot open the file"},
      {"split " + vision + " --input 2x3x16x16 --stages 2", "error: " + vision + ": a directory, not a TorchScript file"},
      {"split " + model + " --input 2xax3 --stages 2", "error: --input 2xax3: size 'a' is not a positive integer"},
      {"split " + model + " --input 2x3:int4 --stages 2", "error: --input 2x3:int4: unknown dtype 'int4'"},
      {"split " + model + " --input 2x3x16 --stages 2", "error: " + model + ": the forward fails on --input 2x3x16: "},
      {"split " + model + " --input 2x3x16x16", "error: give --stages N or --split-at NAME=begin|end"},
      {"split " + model + " --input 2x3x16x16 --split-at fc", "error: --split-at fc: expected NAME=begin or NAME=end"},
      {"split " + model + " --input 2x3x16x16 --stages 50", "error: automatic split: cannot split into 50 stages"},
      {"split " + model + " --input 2x3x16x16 --stages 2 --out " + model, "error: --out " + model + ": exists and is not a directory"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    const auto r = run_pippy(c.args);
    INFO(r.output);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Catch::StartsWith(c.message));
  }
  // A command line CLI11 refuses is a usage error too.
  const auto usage = run_pippy("split " + model + " --stages 2");
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.output, Catch::Contains("--input is required"));
}

TEST_CASE("pippy split without pippy-split beside it says what is missing", "[tools][split]") {
  std::filesystem::remove_all("lonely");
  std::filesystem::create_directories("lonely");
  std::filesystem::copy_file(PIPPY_CLI, "lonely/pippy");
  std::filesystem::permissions("lonely/pippy", std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
  const auto r = run_command("lonely/pippy split x.pt --input 2x3 --stages 2");
  CHECK(r.exit_code == 127);
  CHECK_THAT(r.output, Catch::Contains("pippy split needs"));
  CHECK_THAT(r.output, Catch::Contains("lonely/pippy-split"));
  std::filesystem::remove_all("lonely");
}
