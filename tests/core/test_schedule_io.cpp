#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "pippy/core/error.hpp"
#include "pippy/core/generators.hpp"
#include "pippy/core/schedule_io.hpp"

using namespace pippy;

TEST_CASE("CSV and JSON round-trip every generator, compute-only and lowered") {
  for (auto name : schedule_names()) {
    const int v = (std::string(name) == "zbv" || std::string(name) == "dualpipev") ? 2 : 2;
    auto s = make_schedule({.name = std::string(name), .num_ranks = 4, .num_microbatches = 8, .stages_per_rank =
                                std::string(name).find("1f1b") == 0 || std::string(name).find("zb-h") == 0 ||
                                        std::string(name) == "gpipe"
                                    ? 1
                                    : v});
    for (const auto& variant : {s, add_communication(s)}) {
      INFO(name);
      auto from_csv = schedule_from_csv(to_csv(variant), "x.csv");
      CHECK(from_csv.ranks == variant.ranks);
      CHECK(from_csv.shape == variant.shape);
      auto from_json = schedule_from_json(to_json(variant), "x.json");
      CHECK(from_json.ranks == variant.ranks);
      CHECK(from_json.shape == variant.shape);
      CHECK(from_json.name == variant.name);
    }
  }
}

TEST_CASE("CSV: empty cells are idle slots, quotes and spaces are ignored, V placement is inferred") {
  auto s = schedule_from_csv(",0F0, \"0B0\"\n1F0,1B0,\n", "idle.csv");
  CHECK(s.ranks[0] == std::vector<action>{parse_action("0F0"), parse_action("0B0")});
  // PyTorch writes an idle slot as None; '_' is the hand-written form.
  for (const char* idle : {"None", "_", " None ", ""}) {
    INFO(idle);
    auto t = schedule_from_csv(std::string(idle) + ",0F0," + idle + ",0B0\n1F0," + idle + ",1B0\n", "idle.csv");
    CHECK(t.ranks == s.ranks);
  }
  CHECK(s.shape.num_ranks == 2);
  CHECK(s.shape.num_microbatches == 1);
  // Lines starting with '#' are comments (examples/data/my_schedule.csv says how it was made).
  auto commented = schedule_from_csv("# made by hand\n,0F0, \"0B0\"\n  # rank 1:\n1F0,1B0,\n", "c.csv");
  CHECK(commented.ranks == s.ranks);
  auto v = schedule_from_csv("0F0,3F0,3B0,0B0\n1F0,2F0,2B0,1B0\n", "v.csv");
  CHECK(v.shape.placement == placement_style::v_shape);
  CHECK(v.shape.stages_per_rank == 2);
}

TEST_CASE("CSV: PyTorch's OVERLAP_F_B cells run their F and then their B") {
  auto s = schedule_from_csv("0F0,0F1,(0F2;3B0)OVERLAP_F_B,3F0\n1F0,2F0\n", "overlap.csv");
  CHECK(s.ranks[0] == std::vector<action>{parse_action("0F0"), parse_action("0F1"), parse_action("0F2"),
                                          parse_action("3B0"), parse_action("3F0")});
  CHECK_THROWS_WITH(schedule_from_csv("(0F2;3B0)OVERLAP\n", "o.csv"),
                    "o.csv:1, column 1: cell '(0F2;3B0)OVERLAP': expected (F;B)OVERLAP_F_B");
}

TEST_CASE("malformed CSV cells name the file, line and column") {
  CHECK_THROWS_WITH(schedule_from_csv("0F0,0B0\n1F0,1Q0\n", "mine.csv"),
                    "mine.csv:2, column 2: action '1Q0': unknown kind; expected one of F, I, W, B, U, SEND_F, RECV_F, "
                    "SEND_B, RECV_B");
  CHECK_THROWS_WITH(schedule_from_csv("0F0,0B0\n2F0,2B0\n", "odd.csv"),
                    "odd.csv: 3 stages do not divide evenly over 2 ranks");
  CHECK_THROWS_WITH(schedule_from_csv("1F0,1B0\n0F0,0B0\n", "swap.csv"),
                    "swap.csv: stages sit on ranks neither looped (stage s on rank s mod 2) nor V-shaped");
  CHECK_THROWS_WITH(schedule_from_csv("\n\n", "empty.csv"), "empty.csv: no actions");
}

TEST_CASE("malformed JSON schedules name the field") {
  CHECK_THROWS_WITH(schedule_from_json("{\"actions\": [[\"0F0\", 3]]}", "s.json"),
                    "s.json: actions[0][1] must be a string such as \"0F1\"");
  CHECK_THROWS_WITH(schedule_from_json("{\"actions\": 1}", "s.json"),
                    "s.json: field \"actions\" must be an array of rank lists");
  CHECK_THROWS_WITH(schedule_from_json("{\"ranks\": 3, \"actions\": [[\"0F0\",\"0B0\"]]}", "s.json"),
                    "s.json: field \"ranks\" is 3 but the actions imply 1");
  CHECK_THROWS_WITH(schedule_from_json("{\"actions\": [[\"0F0\",\"0B0\"]], \"placement\": \"zigzag\"}", "s.json"),
                    "s.json: field \"placement\" must be \"looped\" or \"v\"");
  CHECK_THROWS_WITH(schedule_from_json("{", "s.json"), Catch::Contains("s.json: not valid JSON"));
  CHECK_THROWS_WITH(schedule_from_json("{\"name\": 5, \"actions\": [[\"0F0\",\"0B0\"]]}", "s.json"),
                    "s.json: field \"name\" must be a string");
}

TEST_CASE("a JSON schedule's name is its field, or else the file it came from") {
  CHECK(schedule_from_json("{\"name\": \"mine\", \"actions\": [[\"0F0\",\"0B0\"]]}", "s.json").name == "mine");
  CHECK(schedule_from_json("{\"actions\": [[\"0F0\",\"0B0\"]]}", "s.json").name == "s.json");
}

TEST_CASE("a user's CSV file is loaded, validated and used like a built-in schedule") {
  const std::string path = "user_schedule.csv";
  {
    std::ofstream out(path);
    out << to_csv(make_schedule({.name = "1f1b", .num_ranks = 3, .num_microbatches = 6}));
  }
  auto s = load_schedule_file(path);
  CHECK_NOTHROW(validate(s));
  auto e = evaluate(s, unit_costs{});
  CHECK(e.makespan == (6 + 3 - 1) * 3.0);
  std::remove(path.c_str());
  CHECK_THROWS_WITH(load_schedule_file("missing.csv"), "missing.csv: cannot open schedule file");
}

TEST_CASE("CSV and JSON round trips with 3 and 4 stages per rank keep the actions and the shape") {
  for (std::string name : {"interleaved-1f1b", "looped-bfs", "interleaved-zb"})
    for (int v : {3, 4})
      for (int ranks : {2, 3}) {
        const auto s = make_schedule({.name = name, .num_ranks = ranks, .num_microbatches = 2 * ranks,
                                      .stages_per_rank = v});
        REQUIRE(s.shape.stages_per_rank == v);
        for (const auto& variant : {s, add_communication(s)}) {
          INFO(name << " R=" << ranks << " V=" << v);
          const auto from_csv = schedule_from_csv(to_csv(variant), "x.csv");
          CHECK(from_csv.ranks == variant.ranks);
          CHECK(from_csv.shape == pipeline_shape{.num_ranks = ranks, .stages_per_rank = v,
                                                 .num_microbatches = 2 * ranks,
                                                 .placement = placement_style::looped});
          const auto from_json = schedule_from_json(to_json(variant), "x.json");
          CHECK(from_json == variant);
        }
      }
}

TEST_CASE("a hand-written V-shaped schedule with 4 stages per rank reads back as written") {
  // R=2, 8 stages folded four times: rank 0 holds 0, 3, 4, 7 and rank 1 holds 1, 2, 5, 6.
  const std::string text = "0F0,3F0,4F0,7F0,7B0,4B0,3B0,0B0\n"
                           "1F0,2F0,5F0,6F0,6B0,5B0,2B0,1B0\n";
  const auto s = schedule_from_csv(text, "v4.csv");
  CHECK(s.shape == pipeline_shape{.num_ranks = 2, .stages_per_rank = 4, .num_microbatches = 1,
                                  .placement = placement_style::v_shape});
  CHECK(s.shape.stages_of(0) == std::vector<int>{0, 3, 4, 7});
  CHECK(s.shape.stages_of(1) == std::vector<int>{1, 2, 5, 6});
  CHECK(s.ranks[1] == std::vector<action>{parse_action("1F0"), parse_action("2F0"), parse_action("5F0"),
                                          parse_action("6F0"), parse_action("6B0"), parse_action("5B0"),
                                          parse_action("2B0"), parse_action("1B0")});
  CHECK(to_csv(s) == text);
  CHECK_FALSE(find_violation(s).has_value());
  const auto json = to_json(s);
  CHECK(json.find("\"placement\": \"v\"") != std::string::npos);
  CHECK(json.find("\"stages_per_rank\": 4") != std::string::npos);
  CHECK(schedule_from_json(json, "v4.json").shape == s.shape);
  CHECK(schedule_from_json(json, "v4.json").ranks == s.ranks);
  // Lowered: a hand-over crosses ranks at every stage boundary (0-1, 2-3, 4-5, 6-7) and stays on
  // one rank at the folds (1-2, 3-4, 5-6); the lowering reads back the same way.
  const auto lowered = add_communication(s);
  CHECK_FALSE(find_violation(lowered).has_value());
  const auto back = schedule_from_csv(to_csv(lowered), "v4.csv");
  CHECK(back.ranks == lowered.ranks);
  CHECK(back.shape == s.shape);
  int sends = 0;
  for (const auto& list : lowered.ranks)
    for (const auto& a : list)
      sends += a.kind == action_kind::send_f || a.kind == action_kind::send_b;
  CHECK(sends == 8); // 4 crossings, forward and backward, one micro-batch
}
