// The cost table's own parts: the JSON form with layers, links and overhead, transfer sizes from the
// boundary tensors, and regrouping layers into stages.
#include <catch2/catch.hpp>

#include <array>

#include "pippy/core/cost_table.hpp"
#include "pippy/core/error.hpp"
#include "pippy/core/limits.hpp"

using namespace pippy;

TEST_CASE("cost file: layers, links, overhead and output bytes round-trip exactly", "[core][cost]") {
  cost_table t;
  t.stages = {stage_cost{.F = 1.5, .I = 1, .W = 2, .B = 3, .U = 4, .activation_bytes = 800, .weight_input_bytes = 300,
                         .param_bytes = 64, .output_bytes = 200},
              stage_cost{.F = 2, .I = 0.25, .W = 0.75, .B = 1, .U = 0, .activation_bytes = 100}};
  t.layers = {layer_cost{.name = "embed", .F = 1, .I = 0, .W = 0.5, .B = 0.5, .activation_bytes = 10, .output_bytes = 20,
                         .param_bytes = 30},
              layer_cost{.name = "head", .F = 0.5, .I = 0.25, .W = 0.25, .B = 0.5, .activation_bytes = 1, .output_bytes = 2,
                         .param_bytes = 3}};
  t.links = {link_cost{.src = 0, .dst = 1, .latency_us = 35.5, .bandwidth_gbps = 2.5, .probe_latency_us = 12.5},
             link_cost{.src = 1, .dst = 0, .latency_us = 40, .bandwidth_gbps = 0}};
  t.action_overhead_us = 12.25;
  t.microbatch_rows = 16;
  t.step_overhead_us = 600.5;
  t.replica_link = link_class{.latency_us = 80.5, .bandwidth_gbps = 1.25};
  t.replica_reduce_scatter_by_allreduce = true;
  t.send_posting = link_class{.latency_us = 30.25, .bandwidth_gbps = 2.5};
  t.received_input = {.F = 41.5, .B = 52.25};
  t.stage_first_layers = {0, 1};
  const auto back = parse_cost_json(to_cost_json(t, "measured"), "round trip");
  CHECK(back.received_input == t.received_input);
  CHECK(back.stage_first_layers == t.stage_first_layers);
  CHECK(back.send_posting.latency_us == 30.25);
  CHECK(back.send_posting.bandwidth_gbps == 2.5);
  CHECK(back.send_posting_us(5000) == Approx(30.25 + 2)); // 5000 B at 2.5 GB/s: 2 us
  REQUIRE(back.replica_link);
  CHECK(back.replica_link->latency_us == 80.5);
  CHECK(back.replica_link->bandwidth_gbps == 1.25);
  CHECK(back.replica_reduce_scatter_by_allreduce);
  // The second stage gave no output bytes: the file says the activation bytes it falls back to.
  CHECK(back.stages[0] == t.stages[0]);
  CHECK(back.stages[1].output_bytes == 100);
  CHECK(back.layers == t.layers);
  CHECK(back.links == t.links);
  CHECK(back.action_overhead_us == 12.25);
  CHECK(back.microbatch_rows == 16);
  CHECK(back.step_overhead_us == 600.5);
  CHECK(to_cost_json(t, "measured").find("\"source\": \"measured\"") != std::string::npos);
  // A table without the optional parts writes none of them.
  const auto plain = to_cost_json(uniform_costs(2, stage_cost{}));
  CHECK(plain.find("links") == std::string::npos);
  CHECK(plain.find("send_posting") == std::string::npos);
  CHECK(plain.find("received_input_us") == std::string::npos);
  CHECK(plain.find("stage_first_layers") == std::string::npos);
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"received_input_us":{"F":-1}})", "c.json"),
                    Catch::StartsWith("c.json: received_input_us.F must be"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"received_input_us":{"I":1}})", "c.json"),
                    Catch::StartsWith("c.json: received_input_us: unknown field \"I\""));
  const std::string two = R"({"stages":[{"F":1},{"F":1}],"layers":[{"F":1,"I":1,"W":1,"B":2},{"F":1,"I":1,"W":1,"B":2},{"F":1,"I":1,"W":1,"B":2}],)";
  CHECK_NOTHROW(parse_cost_json(two + R"("stage_first_layers":[0,2]})", "c.json").validate(2, "c.json"));
  CHECK_THROWS_WITH(parse_cost_json(two + R"("stage_first_layers":[1,2]})", "c.json").validate(2, "c.json"),
                    Catch::StartsWith("c.json: stage_first_layers[0]: 1 (they begin at 0 and rise, each below the 3 layers)"));
  CHECK_THROWS_WITH(parse_cost_json(two + R"("stage_first_layers":[0,3]})", "c.json").validate(2, "c.json"),
                    Catch::StartsWith("c.json: stage_first_layers[1]: 3"));
  CHECK_THROWS_WITH(parse_cost_json(two + R"("stage_first_layers":[0]})", "c.json").validate(2, "c.json"),
                    Catch::StartsWith("c.json: stage_first_layers has 1 entries but the schedule has 2 stages"));  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"send_posting":{"latency_us":-1,"bandwidth_gbps":1}})", "c.json"),
                    Catch::StartsWith("c.json: send_posting.latency_us must be"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"send_posting":{"latency_us":1,"gbps":1}})", "c.json"),
                    Catch::StartsWith("c.json: send_posting: unknown field \"gbps\""));
  CHECK(plain.find("layers") == std::string::npos);
  CHECK(plain.find("action_overhead_us") == std::string::npos);
  CHECK(plain.find("replica_link") == std::string::npos);
  CHECK_FALSE(parse_cost_json(plain, "plain").replica_link);
  CHECK(plain.find("replica_reduce_scatter") == std::string::npos);
  CHECK_FALSE(parse_cost_json(plain, "plain").replica_reduce_scatter_by_allreduce);
  CHECK_FALSE(parse_cost_json(R"({"stages":[{"F":1}],"replica_reduce_scatter":"ring"})", "c.json").replica_reduce_scatter_by_allreduce);
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"replica_reduce_scatter":"half"})", "c.json"),
                    "c.json: replica_reduce_scatter must be \"ring\" or \"allreduce\", got \"half\"");
}

TEST_CASE("transfer sizes are the boundary tensor's, forward and as a gradient", "[core][cost]") {
  cost_table t;
  t.stages = {stage_cost{.activation_bytes = 1000, .output_bytes = 10}, stage_cost{.activation_bytes = 2000, .output_bytes = 20},
              stage_cost{.activation_bytes = 3000}};
  t.microbatch_scale = {1.0, 0.5};
  // Boundary 0|1 carries stage 0's output: stage 0 sends it forward, stage 1 receives it and sends its gradient back.
  CHECK(t.transfer_bytes(action_kind::send_f, 0, 0) == 10);
  CHECK(t.transfer_bytes(action_kind::recv_f, 1, 0) == 10);
  CHECK(t.transfer_bytes(action_kind::send_b, 1, 0) == 10);
  CHECK(t.transfer_bytes(action_kind::recv_b, 0, 0) == 10);
  CHECK(t.transfer_bytes(action_kind::send_f, 1, 0) == 20);
  CHECK(t.transfer_bytes(action_kind::send_b, 2, 0) == 20);
  // A smaller micro-batch sends less.
  CHECK(t.transfer_bytes(action_kind::send_f, 1, 1) == 10);
  // Without output bytes the activation bytes are the one size given.
  t.stages[1].output_bytes = 0;
  CHECK(t.transfer_bytes(action_kind::send_f, 1, 0) == 2000);
}

TEST_CASE("a link is found by its direction", "[core][cost]") {
  cost_table t;
  t.links = {link_cost{.src = 0, .dst = 1, .latency_us = 5}, link_cost{.src = 1, .dst = 0, .latency_us = 7}};
  REQUIRE(t.link(0, 1));
  CHECK(t.link(0, 1)->latency_us == 5);
  CHECK(t.link(1, 0)->latency_us == 7);
  CHECK(t.link(1, 2) == nullptr);
  CHECK_NOTHROW(t.validate_links(2, "c.json"));
  CHECK_THROWS_WITH(t.validate_links(1, "c.json"),
                    "c.json: links[0].src/dst must be two different ranks below 1 (got 0 -> 1)");
  t.links.push_back(link_cost{.src = 1, .dst = 1});
  CHECK_THROWS_WITH(t.validate_links(2, "c.json"),
                    "c.json: links[2].src/dst must be two different ranks below 2 (got 1 -> 1)");
}

TEST_CASE("cost file errors in layers, links and overhead name the field", "[core][cost][errors]") {
  const std::string stages = R"("stages":[{"F":1}])";
  auto parse = [&](const std::string& rest) { return parse_cost_json("{" + stages + "," + rest + "}", "c.json"); };
  CHECK_THROWS_WITH(parse(R"("links": {})"), "c.json: 'links' must be an array");
  CHECK_THROWS_WITH(parse(R"("links": [3])"), "c.json: links[0] must be an object");
  CHECK_THROWS_WITH(parse(R"("links": [{"src":0,"dst":1,"latency_us":-1,"bandwidth_gbps":1}])"),
                    "c.json: links[0].latency_us must be a finite number of microseconds from 0 to 1e+12 (got -1)");
  CHECK_THROWS_WITH(parse(R"("links": [{"src":0,"dst":1,"latency_us":1}])"), "c.json: links[0].bandwidth_gbps is missing");
  CHECK_THROWS_WITH(parse(R"("links": [{"src":0,"dst":1,"latency_us":1,"bandwidth_gbps":1,"probe_latency_us":-2}])"),
                    "c.json: links[0].probe_latency_us must be a finite number of microseconds from 0 to 1e+12 (got -2)");
  CHECK_THROWS_WITH(parse(R"("links": [{"src":0.5,"dst":1,"latency_us":1,"bandwidth_gbps":1}])"),
                    "c.json: links[0].src must be a rank number (got 0.5)");
  CHECK_THROWS_WITH(parse(R"("links": [{"src":0,"dst":2147483648,"latency_us":1,"bandwidth_gbps":1}])"),
                    "c.json: links[0].dst must be a rank number (got 2147483648)");
  CHECK_THROWS_WITH(parse(R"("layers": [{"name":"a","F":1,"I":1,"W":1},{"name":"b","F":1,"I":"x","W":1}])"),
                    "c.json: layers[1].I must be a finite number of microseconds from 0 to 1e+12 (got \"x\")");
  CHECK_THROWS_WITH(parse(R"("layers": [{"name":7,"F":1,"I":1,"W":1}])"), "c.json: layers[0].name must be a string");
  CHECK_THROWS_WITH(parse(R"("layers": [{"F":1,"I":1,"W":1,"param_bytes":1e300}])"),
                    "c.json: layers[0].param_bytes (bytes) is out of range (from 0 to 1099511627776): 1e+300");
  CHECK_THROWS_WITH(parse(R"("step_overhead_us": "x")"),
                    "c.json: step_overhead_us must be a finite number of microseconds from 0 to 1e+12 (got \"x\")");
  CHECK_THROWS_WITH(parse(R"("action_overhead_us": -3)"),
                    "c.json: action_overhead_us must be a finite number of microseconds from 0 to 1e+12 (got -3)");
  CHECK(parse(R"("action_overhead_us": 3)").action_overhead_us == 3);
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1,"activation_bytes":1e300}]})", "c.json"),
                    "c.json: stages[0].activation_bytes (bytes) is out of range (from 0 to 1099511627776): 1e+300");
}

TEST_CASE("layers regroup into stages: times and held bytes add up, a stage sends its last layer's output",
          "[core][cost]") {
  std::vector<layer_cost> layers;
  for (int i = 0; i < 5; ++i)
    layers.push_back(layer_cost{.name = "l" + std::to_string(i), .F = 1.0 + i, .I = 0.5, .W = 0.25, .B = 0.75,
                                .activation_bytes = 100u * (i + 1), .output_bytes = 10u * (i + 1), .param_bytes = 7});
  const auto st = group_layers(layers, {0, 2, 3});
  REQUIRE(st.size() == 3);
  CHECK(st[0].F == 1 + 2);
  CHECK(st[1].F == 3);
  CHECK(st[2].F == 4 + 5);
  CHECK(st[2].I == 1.0);
  CHECK(st[2].W == 0.5);
  CHECK(st[2].B == 1.5);
  CHECK(st[0].activation_bytes == 300);
  CHECK(st[0].weight_input_bytes == 300); // the first stage's W differentiates through all of them
  CHECK(st[2].weight_input_bytes == 450);
  CHECK(st[0].output_bytes == 20);
  CHECK(st[1].output_bytes == 30);
  CHECK(st[2].param_bytes == 14);
  CHECK(st[0].U == 0);
  // The model's input takes no gradient: the first stage computes none, and its W is its whole backward.
  CHECK(st[0].I == 0);
  CHECK(st[0].W == 0.75 + 0.75);
  CHECK(st[0].B == 0.75 + 0.75);
  CHECK(st[1].I == 0.5); // the others' I and W add up
  CHECK(st[1].W == 0.25);
  CHECK_THROWS_WITH(group_layers(layers, {1, 3}), "group_layers: the first stage must start at layer 0");
  CHECK_THROWS_WITH(group_layers(layers, {0, 3, 3}), "group_layers: stage 1 would hold layers 3..2 of 5");
  CHECK_THROWS_WITH(group_layers(layers, {0, 6}), "group_layers: stage 0 would hold layers 0..5 of 5");
}

TEST_CASE("a transfer waits for its link, holds it for bytes / bandwidth and arrives latency later", "[core][cost]") {
  const link_class link{.latency_us = 5, .bandwidth_gbps = 2}; // 2 GB/s = 2000 bytes per microsecond
  const auto first = time_transfer(10, 0, 4000, link);
  CHECK(first.start == 10);
  CHECK(first.link_free == 12);
  CHECK(first.arrive == 17);
  const auto second = time_transfer(11, first.link_free, 2000, link); // posted while the link is busy
  CHECK(second.start == 12);
  CHECK(second.arrive == 18);
  CHECK(time_transfer(3, 0, 1u << 30, link_class{.latency_us = 1}).arrive == 4); // unlimited bandwidth
  // A measured pair overrides the model's class; other pairs keep it.
  cost_table t;
  t.links = {link_cost{.src = 1, .dst = 0, .latency_us = 9, .bandwidth_gbps = 3}};
  link_model model = link_model::uniform(1, 10);
  model.ranks_per_host = 2;
  model.inter_host = {4, 5};
  CHECK(link_between(t, model, 1, 0).latency_us == 9);
  CHECK(link_between(t, model, 0, 1).latency_us == 1);
  CHECK(link_between(t, model, 1, 2).latency_us == 4);
}

TEST_CASE("a link is fitted to one-way times at several sizes", "[core][cost]") {
  // 20 us + bytes / (4 GB/s): 4000 bytes per microsecond.
  const auto l = fit_link({{1000, 20.25}, {64000, 36}, {1000000, 270}});
  CHECK(l.latency_us == Approx(20));
  CHECK(l.bandwidth_gbps == Approx(4));
  // Times that do not grow with size: latency only, the mean.
  const auto flat = fit_link({{1000, 12}, {2000, 10}, {4000, 8}});
  CHECK(flat.bandwidth_gbps == 0);
  CHECK(flat.latency_us == Approx(10));
  // A fit through the origin's left side clamps the latency at 0.
  CHECK(fit_link({{1000, 0.1}, {3000, 2.1}}).latency_us == 0);
  CHECK_THROWS_WITH(fit_link({{1000, 1}, {1000, 2}}), "fit_link: needs times at two or more different sizes");
  CHECK_THROWS_WITH(fit_link({}), "fit_link: needs times at two or more different sizes");
}

TEST_CASE("the replicas' link is fitted to all-reduce times as one step of their ring", "[core][cost]") {
  // All-reduces of 3 replicas timed on a link of 30 us and 2 GB/s: allreduce_time's own numbers come back.
  const link_class truth{.latency_us = 30, .bandwidth_gbps = 2};
  std::vector<std::pair<double, double>> points;
  for (std::uint64_t bytes : {4096u, 262144u, 2097152u})
    points.push_back({static_cast<double>(bytes), allreduce_time(bytes, 3, truth)});
  const link_class fit = fit_ring_link(points, 3);
  CHECK(fit.latency_us == Approx(30));
  CHECK(fit.bandwidth_gbps == Approx(2));
  CHECK_THROWS_WITH(fit_ring_link(points, 1), "replica link: an all-reduce needs 2 or more replicas, got 1");
  // A stage without parameters posts no collective; ZeRO-1's U measured with its all-gather gives the
  // whole step back.
  CHECK(ring_pass_time(0, 3, truth) == 0);
  CHECK(whole_step_us(600.0 / 3 + ring_pass_time(2097152, 3, truth), 2097152, 3, truth) == Approx(600));
  // The table's replica link, where it has one, is what the collectives take; else the link model's.
  cost_table t;
  const link_model model = link_model::uniform(5, 0);
  CHECK(replica_link(t, model, 0, 2).latency_us == 5);
  t.replica_link = fit;
  CHECK(replica_link(t, model, 0, 2).latency_us == Approx(30));
  t.replica_link->latency_us = -1;
  t.stages = {stage_cost{}};
  CHECK_THROWS_WITH(t.validate(1, "p.json"),
                    "p.json: replica_link's latency_us and bandwidth_gbps must be finite non-negative numbers (got -1, 2)");
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"replica_link":{"latency_us":1,"bw":2}})", "p.json"),
                    Catch::StartsWith("p.json: replica_link: unknown field \"bw\""));
}

TEST_CASE("layers at another micro-batch size: piecewise linear through the measured sizes, else in proportion",
          "[core][cost]") {
  cost_table t = uniform_costs(1, stage_cost{});
  t.microbatch_rows = 16;
  // Layer a measured at 16 rows (the table's size), 32 and 128: F bends (100, 150, 290), I is a line.
  t.layers = {layer_cost{.name = "a", .F = 100, .I = 40, .W = 60, .B = 100,
                         .other_sizes = {{.rows = 32, .F = 150, .I = 56, .W = 70, .B = 126},
                                         {.rows = 128, .F = 290, .I = 152, .W = 118, .B = 270}},
                         .activation_bytes = 1600, .output_bytes = 160},
              layer_cost{.name = "b", .F = 10, .I = 4, .W = 6, .B = 10, .activation_bytes = 16}};
  const auto at64 = layers_at_rows(t, 64); // a third of the way from 32 to 128
  CHECK(at64[0].F == Approx(150 + 140.0 / 3));
  CHECK(at64[0].I == Approx(56 + 32));
  CHECK(at64[0].W == Approx(70 + 16));
  CHECK(at64[0].B == Approx(126 + 48));
  CHECK(at64[0].other_sizes.empty()); // the times are those at 64 rows now
  CHECK(at64[0].activation_bytes == 6400);
  CHECK(at64[0].output_bytes == 640);
  CHECK(at64[1].F == 40); // one size: 4x the rows, 4x the time
  CHECK(at64[1].B == 40);
  CHECK(at64[1].activation_bytes == 64);
  // At a measured size, its own times; between 16 and 32 that segment's line, not the one through 128.
  CHECK(layers_at_rows(t, 128)[0].F == Approx(290));
  CHECK(layers_at_rows(t, 24)[0].F == Approx(125));
  // Beyond the ends the end segments' lines, never below 0.
  CHECK(layers_at_rows(t, 256)[0].F == Approx(290 + 140.0 / 96 * 128));
  CHECK(layers_at_rows(t, 8)[0].F == Approx(75));
  t.layers[0].other_sizes[0].F = 300; // F falls from 32 rows down to 16 steeply
  CHECK(layers_at_rows(t, 4)[0].F == 0);
  // The sizes and the optimizer step go through the cost file; a layer without them writes none.
  t.layers[0].U = 12.5;
  const auto text = to_cost_json(t);
  const auto back = parse_cost_json(text, "x.json");
  CHECK(back.layers == t.layers);
  CHECK(text.find("\"other_sizes\"") == text.rfind("\"other_sizes\"")); // only layer a has them
  CHECK(text.find("\"U\": 12.5") != std::string::npos);
  const std::string head = R"({"stages":[{"F":1}],"microbatch_rows":16,"layers":[{"F":1,"I":1,"W":1,"other_sizes":)";
  CHECK_THROWS_WITH(parse_cost_json(head + R"([{"rows":32,"F":2,"I":2,"W":"x"}]}]})", "c.json"),
                    Catch::StartsWith("c.json: layers[0].other_sizes[0].W must be"));
  CHECK_THROWS_WITH(parse_cost_json(head + R"([{"rows":32,"F":2,"I":2,"W":2},{"rows":32,"F":2,"I":2,"W":2}]}]})", "c.json"),
                    "c.json: layers[0].other_sizes[1].rows must grow from one size to the next and differ from "
                    "microbatch_rows (16), got 32");
  CHECK_THROWS_WITH(parse_cost_json(head + R"([{"rows":16,"F":2,"I":2,"W":2}]}]})", "c.json"),
                    Catch::StartsWith("c.json: layers[0].other_sizes[0].rows must grow"));
  CHECK_THROWS_WITH(parse_cost_json(head + R"([{"rows":0,"F":2,"I":2,"W":2}]}]})", "c.json"),
                    Catch::StartsWith("c.json: layers[0].other_sizes[0].rows"));
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"layers":[{"F":1,"I":1,"W":1,"other_sizes":[{"rows":8,"F":1,"I":1,"W":1}]}]})", "c.json"),
                    "c.json: layers[0].other_sizes needs the file's microbatch_rows, the size F, I, W and B were measured at");
  std::string many = head + "[";
  for (int k = 0; k <= limits::max_layer_sizes; ++k)
    many += (k ? "," : "") + std::string(R"({"rows":)") + std::to_string(32 + k) + R"(,"F":1,"I":1,"W":1})";
  CHECK_THROWS_WITH(parse_cost_json(many + "]}]}", "c.json"),
                    "c.json: layers[0].other_sizes has 17 sizes, at most 16");
  cost_table unknown;
  unknown.layers = t.layers;
  CHECK_THROWS_WITH(layers_at_rows(unknown, 8),
                    "layers_at_rows: needs the profile's microbatch_rows and a positive number of rows (got 0 and 8)");
}

// Two runs of one model: a at 16 rows a micro-batch, b at 64. Each one's layers hold what its own stages
// took in the pipeline; the blend takes a's at 16 and below, b's at 64 and beyond, linear in rows between.
TEST_CASE("two profiles at two micro-batch sizes: each layer's time blended in rows", "[core][cost][planner]") {
  cost_table a = uniform_costs(1, stage_cost{});
  a.microbatch_rows = 16;
  a.action_overhead_us = 7;
  a.layers = {layer_cost{.name = "x", .F = 100, .I = 40, .W = 60, .B = 100, .U = 5,
                         .other_sizes = {{.rows = 32, .F = 180, .I = 70, .W = 110, .B = 180},
                                         {.rows = 64, .F = 340, .I = 130, .W = 210, .B = 340}}}};
  cost_table b = a;
  b.microbatch_rows = 64;
  b.action_overhead_us = 99;
  b.layers = {layer_cost{.name = "x", .F = 260, .I = 100, .W = 160, .B = 260, .U = 6,
                         .other_sizes = {{.rows = 16, .F = 80, .I = 30, .W = 50, .B = 80},
                                         {.rows = 32, .F = 140, .I = 50, .W = 90, .B = 140},
                                         {.rows = 128, .F = 500, .I = 200, .W = 300, .B = 500}}}};
  const cost_table c = blend_profiles(a, b, "a.json", "b.json");
  CHECK(c.microbatch_rows == 16);
  CHECK(c.action_overhead_us == 7); // everything but the layers' times is a's
  REQUIRE(c.layers.size() == 1);
  const layer_cost& x = c.layers[0];
  CHECK(x.F == 100); // a's own size
  CHECK(x.U == 5);
  REQUIRE(x.other_sizes.size() == 3);
  CHECK(x.other_sizes[0].rows == 32); // a third of the way: 2/3 of a's 180 and 1/3 of b's 140
  CHECK(x.other_sizes[0].F == Approx(180 * 2.0 / 3 + 140 / 3.0));
  CHECK(x.other_sizes[1].rows == 64);
  CHECK(x.other_sizes[1].F == Approx(260)); // b's own
  CHECK(x.other_sizes[1].W == Approx(160));
  CHECK(x.other_sizes[2].rows == 128);
  CHECK(x.other_sizes[2].F == Approx(500)); // beyond b's size: b's
  CHECK(layers_at_rows(c, 48)[0].F == Approx((x.other_sizes[0].F + 260) / 2));
  CHECK_THROWS_WITH(blend_profiles(a, a, "a.json", "b.json"), Catch::Contains("b.json: its microbatch_rows (16) are a.json's"));
  cost_table other = b;
  other.layers[0].name = "y";
  CHECK_THROWS_WITH(blend_profiles(a, other, "a.json", "b.json"),
                    "b.json: layers[0] is 'y', but a.json's is 'x': not a profile of the same model");
  other.layers.push_back(other.layers[0]);
  CHECK_THROWS_WITH(blend_profiles(a, other, "a.json", "b.json"), Catch::Contains("b.json: 2 layers, but a.json has 1"));
  other = b;
  other.microbatch_rows = 0;
  CHECK_THROWS_WITH(blend_profiles(a, other, "a.json", "b.json"), Catch::StartsWith("b.json: blending two profiles needs"));
}

// Each run's link latency came from its own waits at its own boundary's size: a blend takes the line
// through the two runs' times on each link.
TEST_CASE("two profiles at two micro-batch sizes: a link's latency and bandwidth through both runs' times",
          "[core][cost][planner]") {
  cost_table a = uniform_costs(2, stage_cost{});
  a.microbatch_rows = 16;
  a.stages[0].output_bytes = 1000;
  a.layers = {layer_cost{.name = "x", .F = 1}, layer_cost{.name = "y", .F = 1}};
  a.links = {link_cost{.src = 0, .dst = 1, .latency_us = 100, .bandwidth_gbps = 0.01}, // 200 us for 1000 B
             link_cost{.src = 1, .dst = 0, .latency_us = 30, .bandwidth_gbps = 0}};
  cost_table b = a;
  b.microbatch_rows = 128;
  b.stages[0].output_bytes = 8000;
  b.links = {link_cost{.src = 0, .dst = 1, .latency_us = 50, .bandwidth_gbps = 0.01}, // 850 us for 8000 B
             link_cost{.src = 1, .dst = 0, .latency_us = 20, .bandwidth_gbps = 0}};   // faster at more bytes
  const cost_table c = blend_profiles(a, b, "a.json", "b.json");
  const double per_us = 7000.0 / 650;
  CHECK(c.links[0].bandwidth_gbps == Approx(per_us / 1e3));
  CHECK(c.links[0].latency_us == Approx(200 - 1000 / per_us));
  CHECK(c.links[0].latency_us + 8000 / per_us == Approx(850)); // b's time at b's bytes
  CHECK(c.links[1].latency_us == 30); // no positive slope: a's own
  CHECK(c.links[1].bandwidth_gbps == 0);
}

// A run of two stages per rank folded back (ZB-V) carries boundaries 0 and 2 on the link between its
// ranks and keeps boundary 1 on rank 1: the blend reads that from each profile's stage_ranks.
TEST_CASE("two profiles of V-shaped runs: a link's bytes are those of the boundaries that crossed it",
          "[core][cost][planner]") {
  cost_table a = uniform_costs(4, stage_cost{});
  a.microbatch_rows = 16;
  a.stage_ranks = {0, 1, 1, 0};
  for (int s = 0; s < 4; ++s)
    a.stages[static_cast<std::size_t>(s)].output_bytes = std::array<std::uint64_t, 4>{1000, 50000, 3000, 10}[static_cast<std::size_t>(s)];
  a.layers = {layer_cost{.name = "x", .F = 1}, layer_cost{.name = "y", .F = 1}};
  a.links = {link_cost{.src = 0, .dst = 1, .latency_us = 100, .bandwidth_gbps = 0.01}}; // 2000 B: 300 us
  cost_table b = a;
  b.microbatch_rows = 128;
  for (auto& s : b.stages)
    s.output_bytes *= 8;
  b.links = {link_cost{.src = 0, .dst = 1, .latency_us = 50, .bandwidth_gbps = 0.01}}; // 16000 B: 1650 us
  const cost_table c = blend_profiles(a, b, "a.json", "b.json");
  const double per_us = 14000.0 / 1350;
  CHECK(c.links[0].bandwidth_gbps == Approx(per_us / 1e3));
  CHECK(c.links[0].latency_us == Approx(300 - 2000 / per_us));
  CHECK(c.stage_ranks == a.stage_ranks);
  // Read as stage s on rank s mod 2, every boundary would have crossed: 18000 and 144000 bytes.
  a.stage_ranks.clear(), b.stage_ranks.clear();
  const cost_table looped = blend_profiles(a, b, "a.json", "b.json");
  const double looped_per_us = 126000.0 / (14450 - 1900); // 50 + 14400 against 100 + 1800 us
  CHECK(looped.links[0].bandwidth_gbps == Approx(looped_per_us / 1e3));

  b.stage_ranks = {0, 1, 1};
  CHECK_THROWS_WITH(blend_profiles(a, b, "a.json", "b.json"),
                    Catch::StartsWith("b.json: 'stage_ranks' has 3 entries but the schedule has 4 stages"));
}

TEST_CASE("cost file: stage_ranks round-trip, and a bad rank is named", "[core][cost]") {
  cost_table t = uniform_costs(3, stage_cost{.F = 1});
  t.stage_ranks = {0, 1, 0};
  const cost_table back = parse_cost_json(to_cost_json(t), "c.json");
  CHECK(back.stage_ranks == t.stage_ranks);
  CHECK(to_cost_json(uniform_costs(1, stage_cost{})).find("stage_ranks") == std::string::npos);
  CHECK_NOTHROW(back.validate_links(2, "c.json"));
  CHECK_THROWS_WITH(back.validate_links(1, "c.json"), "c.json: stage_ranks[1]: rank 1 is not below 1 ranks");
  cost_table short_of = uniform_costs(2, stage_cost{.F = 1});
  short_of.stage_ranks = {0, 1, 0};
  CHECK_THROWS_WITH(short_of.validate(2, "c.json"), "c.json: 'stage_ranks' has 3 entries but the schedule has 2 stages");
  CHECK_THROWS_WITH(parse_cost_json(R"({"stages":[{"F":1}],"stage_ranks":[-1]})", "c.json"),
                    Catch::StartsWith("c.json: stage_ranks[0] (a rank)"));
}

// The same profiled run three times (and twice): one run slowed by its machine does not decide the times.
TEST_CASE("profiles of one configuration: each time the median of the runs', the rest checked alike",
          "[core][cost][planner]") {
  auto run = [](double f, double overhead, double latency, std::vector<double> noise) {
    cost_table t = uniform_costs(2, stage_cost{.F = f, .I = 1, .W = 1, .B = 2 * f, .U = 3, .activation_bytes = 64});
    t.microbatch_rows = 8;
    t.stage_ranks = {0, 1};
    t.action_overhead_us = overhead;
    t.step_overhead_us = 10 * overhead;
    t.arrival_cost_us = overhead / 2;
    t.send_posting = {.latency_us = latency / 10, .bandwidth_gbps = 4};
    t.links = {link_cost{.src = 0, .dst = 1, .latency_us = latency, .bandwidth_gbps = 2, .probe_latency_us = 40},
               link_cost{.src = 1, .dst = 0, .latency_us = 2 * latency, .bandwidth_gbps = 2}};
    t.layers = {layer_cost{.name = "a", .F = f / 2, .B = f, .other_sizes = {{.rows = 32, .F = 4 * f, .B = 8 * f}}},
                layer_cost{.name = "b", .F = f / 2, .B = f, .other_sizes = {{.rows = 32, .F = 2 * f, .B = 4 * f}}}};
    t.noise = std::move(noise);
    return t;
  };
  // The second run was slow (F 150), the third quick in its links (latency 80).
  const std::vector<cost_table> runs{run(100, 20, 200, {0.5, 1.0, 1.5}), run(150, 30, 210, {0.9, 1.0, 1.1}),
                                     run(110, 10, 80, {0.8, 1.0, 1.4})};
  const std::vector<std::string> names{"p1.json", "p2.json", "p3.json"};
  const cost_table m = median_profile(runs, names);
  CHECK(m.stages[1].F == 110);
  CHECK(m.stages[0].B == 220);
  CHECK(m.stages[0].U == 3);
  CHECK(m.stages[0].activation_bytes == 64);
  CHECK(m.layers[0].F == 55);
  CHECK(m.layers[1].other_sizes[0].B == 440);
  CHECK(m.layers[1].other_sizes[0].rows == 32);
  CHECK(m.links[0].latency_us == 200);
  CHECK(m.links[1].latency_us == 400);
  CHECK(m.links[0].probe_latency_us == 40);
  CHECK(m.send_posting.latency_us == 20);
  CHECK(m.action_overhead_us == 20);
  CHECK(m.step_overhead_us == 200);
  CHECK(m.arrival_cost_us == 10);
  CHECK(m.stage_ranks == std::vector<int>{0, 1});
  // Quantile by quantile (0.8, 1.0, 1.4: mean 16/15), scaled back to a mean of 1.
  REQUIRE(m.noise.size() == 3);
  CHECK(m.noise[0] == Approx(0.8 * 15 / 16));
  CHECK(m.noise[2] == Approx(1.4 * 15 / 16));
  // Two runs: the mean of the two.
  const cost_table two = median_profile({runs[0], runs[1]}, {"p1.json", "p2.json"});
  CHECK(two.stages[0].F == 125);
  CHECK(two.links[0].latency_us == 205);
  // One run: itself.
  CHECK(median_profile({runs[2]}, {"p3.json"}).stages[0].F == 110);

  // Runs of another configuration are named with what differs.
  auto refused = [&](cost_table other) {
    return std::vector<cost_table>{runs[0], runs[1], std::move(other)};
  };
  cost_table other = runs[2];
  other.stages.pop_back();
  CHECK_THROWS_WITH(median_profile(refused(other), names),
                    "p3.json: the number of stages (1) differs from p1.json's (a median is taken over runs of one configuration)");
  other = runs[2];
  other.stages[1].param_bytes = 5;
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: stages[1]'s bytes differs from p1.json's"));
  other = runs[2];
  other.layers[1].name = "c";
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: layers[1] ('c': its name, bytes or sizes)"));
  other = runs[2];
  other.layers[0].other_sizes[0].rows = 16;
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: layers[0]"));
  other = runs[2];
  other.microbatch_rows = 16;
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: microbatch_rows (16) differs"));
  other = runs[2];
  other.links.pop_back();
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: the set of links differs"));
  other = runs[2];
  other.stage_ranks = {1, 0};
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: stage_ranks differs"));
  other = runs[2];
  other.noise.clear();
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: the number of noise quantiles (0)"));
  other = runs[2];
  other.replica_link = link_class{.latency_us = 1};
  CHECK_THROWS_WITH(median_profile(refused(other), names), Catch::StartsWith("p3.json: replica_link"));
  CHECK_THROWS_WITH(median_profile({}, {}), "median of profiles: no profile given");
  CHECK_THROWS_WITH(median_profile(runs, {"p1.json"}), "median of profiles: 1 names for 3 profiles");
  CHECK(profiles_named({"a.json"}) == "cost file 'a.json'");
  CHECK(profiles_named({"a.json", "b.json"}) == "cost files 'a.json', 'b.json' (their median)");
}
