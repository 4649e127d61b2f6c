#include "pippy/gui/timeline_view.hpp"

#include <QFontMetrics>
#include <QHelpEvent>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QSvgGenerator>
#include <QToolTip>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "pippy/core/error.hpp"
#include "pippy/traces/chrome_trace.hpp"

namespace pippy::gui {

trace load_any_trace(const std::string& path) {
  if (path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0) {
    std::ifstream in(path);
    if (!in)
      throw input_error(path + ": cannot open trace file");
    trace t;
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue;
      parse_json_line(line, t, path + ": line " + std::to_string(n));
    }
    if (t.events.empty())
      throw input_error(path + ": no pipeline actions in the trace");
    return t;
  }
  return load_chrome_trace(path);
}

// ---- panel -------------------------------------------------------------------------------------

void panel::rebuild() {
  lanes.clear();
  int R = t.num_ranks;
  for (const auto& e : t.events)
    R = std::max(R, e.rank + 1);
  for (const auto& s : t.memory)
    R = std::max(R, s.rank + 1);
  t.num_ranks = R;
  std::vector<std::set<int>> stages(static_cast<std::size_t>(R));
  std::vector<char> has_comm(static_cast<std::size_t>(R), 0);
  for (const auto& e : t.events) {
    if (is_compute(e.act.kind))
      stages[static_cast<std::size_t>(e.rank)].insert(e.act.stage);
    else
      has_comm[static_cast<std::size_t>(e.rank)] = 1;
  }
  for (int r = 0; r < R; ++r) {
    const auto& st = stages[static_cast<std::size_t>(r)];
    if (st.size() > 1)
      for (int s : st)
        lanes.push_back(lane{.rank = r, .stage = s});
    else
      lanes.push_back(lane{.rank = r, .stage = -1});
    if (has_comm[static_cast<std::size_t>(r)])
      lanes.push_back(lane{.rank = r, .stage = -1, .comm = true});
  }
  for (std::size_t i = 0; i < t.events.size(); ++i)
    add_event(i); // every rank and stage has its lane by now
  for (auto& l : lanes)
    l.sorted = false;
  finish_update();
}

bool panel::add_event(std::size_t i) {
  const auto& e = t.events[i];
  const bool comm = !is_compute(e.act.kind);
  lane* target = nullptr;
  for (auto& l : lanes) {
    if (l.rank != e.rank || l.comm != comm)
      continue;
    if (comm || l.stage == e.act.stage) {
      target = &l;
      break;
    }
    if (l.stage == -1) {
      if (l.only_stage >= 0 && l.only_stage != e.act.stage)
        return false; // the rank turns out to hold a second stage: one lane per stage from now on
      l.only_stage = e.act.stage;
      target = &l;
      break;
    }
  }
  if (!target) // a live event on a rank or stage not seen yet: the caller lays the lanes out again
    return false;
  if (!target->events.empty() && t.events[target->events.back()].start_us > e.start_us)
    target->sorted = false;
  target->events.push_back(static_cast<std::uint32_t>(i));
  target->max_end.push_back(std::max(target->max_end.empty() ? e.end_us : target->max_end.back(), e.end_us));
  return true;
}

void panel::finish_update(bool with_metrics) {
  for (auto& l : lanes) {
    if (l.sorted)
      continue;
    std::stable_sort(l.events.begin(), l.events.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return t.events[a].start_us < t.events[b].start_us; });
    l.max_end.resize(l.events.size());
    double mx = -1e300;
    for (std::size_t k = 0; k < l.events.size(); ++k)
      l.max_end[k] = mx = std::max(mx, t.events[l.events[k]].end_us);
    l.sorted = true;
  }
  if (!with_metrics)
    return;
  m = compute_metrics(t);
  on_critical_path.assign(t.events.size(), 0);
  for (const auto i : m.critical_path)
    on_critical_path[i] = 1;
  gaps_of_rank.assign(static_cast<std::size_t>(t.num_ranks), {});
  for (std::size_t g = 0; g < m.gaps.size(); ++g)
    if (m.gaps[g].rank < t.num_ranks)
      gaps_of_rank[static_cast<std::size_t>(m.gaps[g].rank)].push_back(static_cast<std::uint32_t>(g)); // by time per rank
}

// ---- view --------------------------------------------------------------------------------------

TimelineView::TimelineView(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  setMinimumSize(400, 200);
  setAutoFillBackground(false);
}

TimelineView::~TimelineView() = default;

QColor TimelineView::bubble_color() { return QColor(250, 205, 205); }
QColor TimelineView::marker_color() { return QColor(220, 0, 0); }
QColor TimelineView::step_marker_color() { return QColor(40, 90, 210); }
bool TimelineView::is_step_marker(const trace_marker& m) { return m.name.rfind("step ", 0) == 0; }
QColor TimelineView::transfer_color() { return QColor(110, 110, 110); }
QColor TimelineView::lane_color() { return QColor(246, 246, 246); }
QColor TimelineView::memory_color() { return QColor(240, 244, 250); }
QColor TimelineView::memory_line_color() { return QColor(30, 90, 200); }

void TimelineView::paint_action_box(QPainter& p, const QRectF& box, const action& a) {
  const QColor c = action_color(a);
  p.fillRect(box, c);
  if (a.kind == action_kind::backward_weight)
    p.fillRect(box, QBrush(c.darker(160), Qt::BDiagPattern));
  else if (a.kind == action_kind::backward_input)
    p.fillRect(box, QBrush(c.lighter(150), Qt::Dense6Pattern));
}

const std::vector<std::pair<QString, QString>>& TimelineView::key_bindings() {
  static const std::vector<std::pair<QString, QString>> keys = {
      {"+ or =", "zoom in around the middle"},
      {"-", "zoom out around the middle"},
      {"Left / Right", "pan"},
      {"F, 0 or Home", "fit the whole run"},
      {"End", "follow a live run's newest actions again"},
      {"Esc", "clear the selection"},
      {"?", "this help"},
      {"wheel", "zoom around the cursor"},
      {"Shift+wheel, or drag", "pan"},
      {"hover", "an action's stage, micro-batch, start, duration and bytes; a marker's detail"},
      {"click", "select an action: its micro-batch highlighted on every rank, its dependencies drawn"},
  };
  return keys;
}

QColor TimelineView::action_color(const action& a) {
  return action_color_hsv(a).toRgb();
}

QColor TimelineView::action_color_hsv(const action& a) {
  const int hue = a.microbatch < 0 ? 0 : (a.microbatch * 67) % 360;
  switch (a.kind) {
  case action_kind::forward: return QColor::fromHsv(hue, 150, 235);
  case action_kind::full_backward: return QColor::fromHsv(hue, 230, 165);
  case action_kind::backward_input: return QColor::fromHsv(hue, 230, 140);
  case action_kind::backward_weight: return QColor::fromHsv(hue, 120, 200);
  case action_kind::optimizer_step: return QColor(70, 70, 70);
  case action_kind::reduce_grad: return QColor(150, 90, 190); // apart from the transfers' grey on the comm lane
  default: return transfer_color(); // SEND and RECV
  }
}

void TimelineView::add_trace(trace t, const std::string& title) {
  auto pn = std::make_unique<panel>();
  pn->title = title.empty() ? t.run : title;
  pn->t = std::move(t);
  pn->rebuild();
  panels_.push_back(std::move(pn));
  update_comparison();
  fitted_ = false;
  update();
}

double TimelineView::comparison_error(double predicted_start, double predicted_us, double measured_start, double measured_us) {
  const double off = std::max(std::abs(measured_start - predicted_start), std::abs(measured_us - predicted_us));
  if (off == 0)
    return 0;
  return predicted_us > 0 ? off / predicted_us : std::numeric_limits<double>::infinity();
}

QColor TimelineView::error_color(double error) {
  const double f = std::isfinite(error) ? std::clamp(error / error_scale, 0.0, 1.0) : 1.0;
  return QColor::fromHsv(static_cast<int>(std::lround(120 * (1 - f))), 200, 210).toRgb();
}

QColor TimelineView::critical_path_color() { return QColor(255, 140, 0); }

void TimelineView::show_critical_path(bool on) {
  critical_path_ = on;
  update();
}

const panel* TimelineView::comparison() const {
  for (const auto& pn : panels_)
    if (pn->comparison)
      return pn.get();
  return nullptr;
}

void TimelineView::update_comparison() {
  if (selected_ && (selected_->panel >= panels_.size() || panels_[selected_->panel]->comparison)) { // gone with it
    clear_selection();
  }
  std::erase_if(panels_, [](const auto& pn) { return pn->comparison; });
  if (panels_.size() != 2 || live_panel_)
    return;
  const trace& pt = panels_[0]->t;
  const trace& mt = panels_[1]->t;
  if (pt.events.empty() || mt.events.empty() || !why_not_comparable(pt, mt).empty())
    return;
  const double p0 = panels_[0]->m.start_us, m0 = panels_[1]->m.start_us;
  auto cmp = std::make_unique<panel>();
  cmp->comparison = true;
  cmp->title = "comparison: each measured action coloured by its error against the prediction (green: equal, red: off by " +
               std::to_string(static_cast<int>(100 * error_scale)) + "% of its predicted time or more)";
  cmp->t.num_ranks = mt.num_ranks;
  // Matched as trace diff matches them; transfers are not compared.
  const auto matched = match_actions(pt, mt, [](const trace_event& e) { return is_compute(e.act.kind); });
  for (const auto& [i, j] : matched.pairs) {
    const trace_event &pe = pt.events[i], &e = mt.events[j];
    cmp->t.events.push_back(e);
    cmp->predicted.emplace_back(pe.start_us - p0, pe.duration_us());
    cmp->error_of.push_back(comparison_error(pe.start_us - p0, pe.duration_us(), e.start_us - m0, e.duration_us()));
  }
  cmp->rebuild();
  panels_.push_back(std::move(cmp));
}

namespace {
// (Re)reads panel pn from its file: its trace, title and lanes, or the error it failed with (also on
// stderr). False when it failed.
bool read_source(panel& pn) {
  bool ok = true;
  try {
    pn.t = load_any_trace(pn.source);
    pn.title = pn.source + (pn.t.run.empty() ? "" : " (" + pn.t.run + ")");
    pn.error.clear();
  } catch (const std::exception& e) {
    ok = false;
    std::cerr << "pippy-view: " << e.what() << "\n";
    pn.t = trace();
    pn.title = pn.source;
    pn.error = e.what();
  }
  pn.rebuild();
  return ok;
}
} // namespace

bool TimelineView::open_files(const QStringList& paths) {
  bool ok = true;
  for (const auto& path : paths) {
    auto pn = std::make_unique<panel>();
    pn->source = path.toStdString();
    ok = read_source(*pn) && ok;
    panels_.push_back(std::move(pn));
  }
  update_comparison();
  fitted_ = false;
  update();
  return ok;
}

void TimelineView::close_live() {
  if (timer_)
    timer_->stop();
  live_.reset();
  if (live_panel_) { // panels after it move: a selection's index would point elsewhere
    clear_selection();
    panels_.erase(std::find_if(panels_.begin(), panels_.end(), [&](const auto& pn) { return pn.get() == live_panel_; }));
  }
  live_panel_ = nullptr;
  live_spec_.clear();
  live_status_.clear();
  follow_ = false;
  update_comparison(); // two traces left: they may be compared now
  update();
}

void TimelineView::close_all() {
  close_live();
  panels_.clear();
  clear_selection();
  follow_ = false;
  fitted_ = false;
  update();
}

QStringList TimelineView::files() const {
  QStringList out;
  for (const auto& pn : panels_)
    if (!pn->source.empty())
      out << QString::fromStdString(pn->source);
  return out;
}

bool TimelineView::reload() {
  bool ok = true;
  for (auto& pn : panels_)
    if (!pn->source.empty() && !pn->comparison)
      ok = read_source(*pn) && ok;
  update_comparison();
  clear_selection(); // event indices of the old traces
  fitted_ = false;
  update();
  return ok;
}

bool TimelineView::start_live(const QString& spec, int poll_ms) {
  close_live(); // one live source at a time
  clear_selection(); // its panel's events may be gone
  auto pn = std::make_unique<panel>();
  pn->title = "live: " + spec.toStdString();
  const bool tcp = is_host_port(spec.toStdString());
  live_spec_ = spec.toStdString();
  retry_delay_ms_ = 0;
  live_announced_ = false;
  live_status_.clear();
  try {
    live_ = std::make_unique<live_reader>(live_spec_);
  } catch (const std::exception& e) {
    pn->error = waiting_for_file() ? live_spec_ + ": waiting for the file to appear" : e.what();
    std::cerr << "pippy-view: " << pn->error << "\n";
    if (!tcp && !waiting_for_file()) { // a file there that cannot be read stays an error; a stream or a file
      panels_.push_back(std::move(pn)); // may not have started yet
      update_comparison();
      update();
      return false;
    }
  }
  live_panel_ = panels_.emplace_back(std::move(pn)).get();
  update_comparison(); // none beside a live run
  if (!live_)
    schedule_retry(live_panel_->error);
  else if (live_->connecting())
    set_live_status("connecting to " + live_spec_ + "...");
  follow_ = true;
  if (!timer_) {
    timer_ = new QTimer(this);
    connect(timer_, &QTimer::timeout, this, [this] { poll_live(); });
  }
  timer_->start(poll_ms);
  poll_live();
  return live_ != nullptr;
}

bool TimelineView::waiting_for_file() const {
  std::error_code ec;
  return !is_host_port(live_spec_) && !std::filesystem::exists(live_spec_, ec);
}

void TimelineView::set_live_status(const std::string& status) {
  if (live_status_ == status)
    return;
  live_status_ = status;
  if (live_panel_)
    live_panel_->title = "live: " + status;
  window()->setWindowTitle(QString::fromStdString("pippy-view - " + status));
  update();
}

void TimelineView::schedule_retry(const std::string& why) {
  // Bounded back-off: 0.25 s, 0.5 s, 1 s, 2 s, then every 2 s while the job is not up.
  retry_delay_ms_ = retry_delay_ms_ <= 0 ? 250 : std::min(2 * retry_delay_ms_, max_retry_delay_ms);
  retry_clock_.restart();
  char delay[32];
  std::snprintf(delay, sizeof delay, "%.2g", retry_delay_ms_ / 1000.0);
  live_panel_->error = why + " (retrying in " + delay + " s)";
  set_live_status(live_panel_->error);
}

void TimelineView::poll_live() {
  if (!live_panel_)
    return;
  // What arrives in this call, including with the poll that finishes a connect, is laid out below.
  const std::size_t before = live_panel_->t.events.size(), memory_before = live_panel_->t.memory.size();
  if (!live_) { // the job was not listening yet: try again after the back-off
    if (retry_clock_.isValid() && retry_clock_.elapsed() < retry_delay_ms_)
      return;
    try {
      live_ = std::make_unique<live_reader>(live_spec_);
    } catch (const std::exception& e) {
      schedule_retry(waiting_for_file() ? live_spec_ + ": waiting for the file to appear" : e.what());
      return;
    }
  }
  if (live_->connecting()) {
    live_->poll(live_panel_->t); // finishes the connect without waiting (and reads if it did)
    if (live_->connecting()) {
      set_live_status("connecting to " + live_spec_ + "...");
      return;
    }
    if (!live_->connected()) { // refused or timed out: retry later
      live_announced_ = false;
      const std::string why = live_spec_ + ": cannot connect to the live stream: " + live_->connect_error();
      live_.reset();
      schedule_retry(why);
      return;
    }
  }
  if (live_->connected() && !live_announced_) {
    live_announced_ = true;
    live_panel_->error.clear();
    retry_delay_ms_ = 0;
    if (live_->is_tcp())
      std::cerr << "pippy-view: connected to " << live_spec_ << "\n";
    set_live_status(live_->is_tcp() ? "connected to " + live_spec_ : "following " + live_spec_);
  }
  panel& pn = *live_panel_;
  const std::size_t errors_before = live_->errors().size();
  live_->poll(pn.t);
  const std::size_t added = pn.t.events.size() - before + pn.t.memory.size() - memory_before;
  for (std::size_t k = errors_before; k < live_->errors().size(); ++k)
    std::cerr << "pippy-view: " << live_->errors()[k] << "\n";
  if (!live_->errors().empty())
    pn.error = live_->errors().back();
  if (!added && live_->connected()) {
    if (metrics_stale_ && metrics_clock_.elapsed() > 250) { // the last batch's metrics were deferred
      pn.finish_update(true);
      metrics_stale_ = false;
      update();
    }
    return;
  }
  bool fits = !pn.lanes.empty();
  for (std::size_t i = before; fits && i < pn.t.events.size(); ++i)
    fits = pn.add_event(i);
  // Metrics (bubbles, summary) cost O(n): on big live runs refresh them at most 4 times a second.
  const bool refresh = pn.t.events.size() < 100000 || !metrics_clock_.isValid() || metrics_clock_.elapsed() > 250 ||
                       !live_->connected();
  if (refresh)
    metrics_clock_.restart();
  metrics_stale_ = !refresh;
  if (fits)
    pn.finish_update(refresh);
  else
    pn.rebuild(); // new ranks or stages: all lanes again
  if (!live_->connected() && live_->is_tcp()) {
    set_live_status(live_->spec() + " (ended)");
    pn.title = "live (ended): " + live_->spec();
  }
  if (follow_ && !pn.t.events.empty()) {
    follow_head();
  }
  update();
}

std::pair<double, double> TimelineView::data_range() const {
  double lo = 0, hi = 0;
  bool any = false;
  for (const auto& pn : panels_) {
    if (pn->t.events.empty())
      continue;
    lo = any ? std::min(lo, pn->m.start_us) : pn->m.start_us;
    hi = any ? std::max(hi, pn->m.end_us) : pn->m.end_us;
    any = true;
  }
  // Finite and within the bounds the view draws (NaN compares false, so it becomes a bound too), and
  // never empty: lo + 1 would equal lo far from zero.
  lo = lo >= -max_view_us ? std::min(lo, max_view_us) : -max_view_us;
  hi = hi <= max_view_us ? std::max(hi, -max_view_us) : max_view_us;
  if (!any || !(hi > lo)) {
    lo = std::min(lo, max_view_us / 2);
    hi = lo + std::max(1.0, std::abs(lo) * 1e-9);
  }
  return {lo, hi};
}

std::vector<double> TimelineView::axis_ticks(double t_lo, double t_hi, std::size_t max_ticks) {
  std::vector<double> ticks;
  const double span = t_hi - t_lo;
  if (!std::isfinite(t_lo) || !std::isfinite(t_hi) || !std::isfinite(span) || !(span > 0) || max_ticks == 0)
    return ticks;
  double step = std::pow(10.0, std::floor(std::log10(std::max(span / 8, 1e-9))));
  for (double mult : {1.0, 2.0, 5.0, 10.0})
    if (span / (step * mult) <= 10) {
      step *= mult;
      break;
    }
  // Far from zero a step below the spacing of doubles there would not move a tick: widen it (by
  // tens, at most ~600 times before it overflows) until the first tick and the next differ.
  double first = std::ceil(t_lo / step) * step;
  while (std::isfinite(step) && std::isfinite(first) && first + step == first) {
    step *= 10;
    first = std::ceil(t_lo / step) * step;
  }
  if (!std::isfinite(step) || !std::isfinite(first))
    return ticks;
  // t = first + k * step rather than t += step: no error builds up, and the count bounds the loop.
  for (std::size_t k = 0; k < max_ticks; ++k) {
    const double t = first + static_cast<double>(k) * step;
    if (!std::isfinite(t) || !(t <= t_hi))
      break;
    if (ticks.empty() || t > ticks.back())
      ticks.push_back(t);
  }
  return ticks;
}

void TimelineView::follow_head() {
  follow_ = true;
  if (fit_mode_ || !fitted_) { // the whole run, growing
    fit();
    return;
  }
  const auto [lo, hi] = data_range(); // keep the zoom, bring the head into view
  t0_ = std::clamp(hi - us_per_px_ * (width() - left_margin - right_margin) * 0.95, -max_view_us, max_view_us);
  update();
}

void TimelineView::fit() {
  const auto [lo, hi] = data_range();
  const double w = std::max(10.0, width() - left_margin - right_margin);
  us_per_px_ = (hi - lo) / w;
  t0_ = lo;
  fitted_ = true;
  fit_mode_ = true;
  update();
}

void TimelineView::zoom(double factor, double anchor_x) {
  const double t = t_of(anchor_x);
  if (std::isfinite(factor) && factor > 0) // a view fitted to a span beyond 1e12 us may stay that wide
    us_per_px_ = std::clamp(us_per_px_ / factor, 1e-6, std::max(1e12, us_per_px_));
  t0_ = std::clamp(t - (anchor_x - left_margin) * us_per_px_, -max_view_us, max_view_us);
  fit_mode_ = false;
  if (!follow_)
    return update();
  follow_head(); // zooming while following keeps the head in view
  update();
}

void TimelineView::show_range(double t_lo, double t_hi) {
  if (!(t_hi > t_lo) || !std::isfinite(t_lo) || !std::isfinite(t_hi))
    return;
  const double w = std::max(10.0, width() - left_margin - right_margin);
  us_per_px_ = std::clamp((t_hi - t_lo) / w, 1e-6, std::max(1e12, (t_hi - t_lo) / w));
  t0_ = std::clamp(t_lo, -max_view_us, max_view_us);
  fitted_ = true;
  fit_mode_ = false;
  follow_ = false;
  update();
}

const trace* TimelineView::first_trace() const {
  for (const auto& pn : panels_)
    if (!pn->t.events.empty())
      return &pn->t;
  return nullptr;
}

int TimelineView::steps() const {
  const trace* t = first_trace();
  return t ? steps_in(*t) : 0;
}

bool TimelineView::zoom_to_step(int k) {
  const int n = steps();
  if (k < 0 || k >= n)
    return false;
  const auto b = bounds_of_steps(*first_trace(), n);
  const double lo = b.first_start_us[static_cast<std::size_t>(k)], hi = b.last_end_us[static_cast<std::size_t>(k)];
  const double margin = (hi - lo) * 0.02;
  show_range(lo - margin, hi + margin);
  return true;
}

void TimelineView::pan_pixels(double dx) {
  t0_ = std::clamp(t0_ - dx * us_per_px_, -max_view_us, max_view_us);
  follow_ = false;
  update();
}

double TimelineView::header_height() const {
  return panels_.empty() ? header_line : header_line * 3 + 4;
}

void TimelineView::layout(double) {
  double y = header_height() + axis_height;
  for (auto& pnp : panels_) {
    panel& pn = *pnp;
    pn.top = y;
    y += header_line; // the panel's title row
    pn.memory_y.assign(static_cast<std::size_t>(pn.t.num_ranks), -1);
    for (std::size_t k = 0; k < pn.lanes.size(); ++k) {
      auto& l = pn.lanes[k];
      l.y = y;
      l.height = l.comm ? comm_height : lane_height;
      y += l.height + 1;
      const bool last_of_rank = k + 1 == pn.lanes.size() || pn.lanes[k + 1].rank != l.rank;
      if (last_of_rank && !pn.t.memory.empty()) {
        pn.memory_y[static_cast<std::size_t>(l.rank)] = y;
        y += memory_height + 1;
      }
    }
    if (!pn.error.empty())
      y += header_line * 2;
    y += 3;
    pn.height = y - pn.top;
    y += panel_gap;
  }
}

void TimelineView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  paint(p, rect());
}

void TimelineView::resizeEvent(QResizeEvent*) {
  if (!fitted_ || follow_)
    fit();
}

int TimelineView::fitting_height() {
  layout(width());
  double y = header_height() + axis_height;
  for (const auto& pn : panels_)
    y = pn->top + pn->height + panel_gap;
  return static_cast<int>(std::ceil(y));
}

bool TimelineView::export_to(const QString& path, int width, int height, QString* note) {
  if (note)
    note->clear();
  // The view the user looks at is left as it was: its size, zoom and position.
  struct restore {
    TimelineView& v;
    QSize size = v.size();
    double t0 = v.t0_, us_per_px = v.us_per_px_;
    bool fitted = v.fitted_, fit_mode = v.fit_mode_;
    ~restore() {
      v.resize(size);
      v.t0_ = t0, v.us_per_px_ = us_per_px, v.fitted_ = fitted, v.fit_mode_ = fit_mode;
      v.update();
    }
  } keep{*this};
  auto say = [&](const QString& text) {
    if (note)
      *note += (note->isEmpty() ? "" : "\n") + text;
  };
  width = std::clamp(width, 100, max_export_size);
  resize(width, std::max(height, 200));
  const int fits = fitting_height();
  if (height == 0) {
    height = std::clamp(fits, 200, max_export_size);
  } else if (height < fits) {
    const int grown = std::min(fits, max_export_size);
    say(QString("--height %1 would cut lanes off (all of them need %2 px): the image is %3 px high")
            .arg(height)
            .arg(fits)
            .arg(grown));
    height = grown;
  }
  if (fits > height)
    say(QString("the lanes need %1 px; the image shows the top %2 px").arg(fits).arg(height));
  const QSize size(width, height);
  if (path.endsWith(".svg", Qt::CaseInsensitive)) {
    resize(size);
    fit();
    QSvgGenerator svg;
    svg.setFileName(path);
    svg.setSize(size);
    svg.setViewBox(QRect(QPoint(0, 0), size));
    svg.setTitle("pippy-view");
    QPainter p;
    if (!p.begin(&svg)) {
      say("cannot write " + path);
      return false;
    }
    paint(p, QRect(QPoint(0, 0), size));
    return p.end();
  }
  if (!render_image(size).save(path)) {
    say("cannot write " + path);
    return false;
  }
  return true;
}

QImage TimelineView::render_image(QSize size) {
  resize(size);
  fit();
  QImage img(size, QImage::Format_ARGB32);
  img.fill(Qt::white);
  QPainter p(&img);
  paint(p, QRect(QPoint(0, 0), size));
  return img;
}

static QString bytes_text(std::uint64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1e9)
    return QString::number(v / 1e9, 'g', 3) + " GB";
  if (v >= 1e6)
    return QString::number(v / 1e6, 'g', 3) + " MB";
  if (v >= 1e3)
    return QString::number(v / 1e3, 'g', 3) + " kB";
  return QString::number(b) + " B";
}

QString TimelineView::time_text(double us, char format, int precision) {
  const double a = std::abs(us);
  if (a >= 1e6)
    return QString::number(us / 1e6, format, precision) + " s";
  if (a >= 1e3)
    return QString::number(us / 1e3, format, precision) + " ms";
  return QString::number(us, format, precision) + " us";
}

static QString us_text(double us) { return TimelineView::time_text(us, 'g', 4); }

void TimelineView::paint(QPainter& p, const QRect& area) {
  if (!fitted_)
    fit();
  layout(area.width());
  p.fillRect(area, Qt::white);
  drawn_ = 0;
  QFont font = p.font();
  font.setPixelSize(11);
  p.setFont(font);
  const QFontMetrics fm(font);
  if (panels_.empty()) {
    p.setPen(Qt::darkGray);
    p.drawText(QRectF(area), Qt::AlignCenter, "No trace. Usage: pippy-view TRACE [TRACE] | --live HOST:PORT|FILE.jsonl");
    return;
  }
  // Summaries side by side.
  const double col = area.width() / static_cast<double>(panels_.size());
  for (std::size_t i = 0; i < panels_.size(); ++i) {
    const panel& pn = *panels_[i];
    const QRectF r(i * col + 4, 2, col - 8, header_line * 3);
    p.setPen(pn.error.empty() ? Qt::black : Qt::red);
    QString text = QString::fromStdString(pn.title) + "\n";
    if (!pn.t.events.empty())
      text += QString("step %1   bubble %2%   utilisation %3%   %4 compute actions, %5 transfers\n")
                  .arg(us_text(pn.m.step_time_us))
                  .arg(100 * pn.m.bubble_fraction, 0, 'f', 1)
                  .arg(100 * pn.m.utilisation, 0, 'f', 1)
                  .arg(pn.m.num_compute)
                  .arg(pn.m.num_comm) +
              QString("critical path %1 actions   peak memory %2")
                  .arg(pn.m.critical_path.size())
                  .arg(bytes_text(pn.m.peak_memory));
    else if (!pn.error.empty())
      text += "error";
    p.drawText(r, Qt::AlignLeft | Qt::AlignTop, text);
  }
  // Time axis.
  const double plot_l = left_margin, plot_r = area.width() - right_margin;
  const double axis_y = header_height();
  p.setPen(QColor(90, 90, 90));
  p.drawLine(QPointF(plot_l, axis_y + axis_height - 2), QPointF(plot_r, axis_y + axis_height - 2));
  {
    const double origin = time_origin_us();
    for (const double t : axis_ticks(t_of(plot_l) - origin, t_of(plot_r) - origin)) {
      const double x = x_of(t + origin);
      if (!std::isfinite(x))
        continue;
      p.drawLine(QPointF(x, axis_y + axis_height - 6), QPointF(x, axis_y + axis_height - 2));
      p.drawText(QPointF(x + 2, axis_y + axis_height - 7), us_text(t));
    }
  }
  p.setClipRect(QRectF(0, header_height() + axis_height, area.width(), area.height()));
  for (auto& pn : panels_)
    draw_panel(p, *pn, area);
  p.setClipping(false);
}

void TimelineView::draw_panel(QPainter& p, panel& pn, const QRect& area) {
  const double plot_l = left_margin, plot_r = area.width() - right_margin;
  const double t_lo = t_of(plot_l), t_hi = t_of(plot_r);
  QFont font = p.font();
  const QFontMetrics fm(font);
  p.setPen(Qt::black);
  p.drawText(QPointF(4, pn.top + header_line - 4), QString::fromStdString(pn.title));
  if (!pn.error.empty()) {
    p.setPen(Qt::red);
    p.drawText(QRectF(4, pn.top + pn.height - header_line * 2 - 3, area.width() - 8, header_line * 2),
               Qt::AlignLeft | Qt::TextWordWrap, "error: " + QString::fromStdString(pn.error));
  }
  const auto clamp_x = [&](double x) { return std::clamp(x, plot_l, plot_r); };
  std::vector<std::pair<QPointF, QPointF>> arrows; // drawn last, over the memory strips
  for (const lane& l : pn.lanes) {
    if (l.y > area.height() || l.y + l.height < 0)
      continue;
    // Label and lane background.
    p.setPen(Qt::black);
    QString label = l.comm ? QString("  comm") : QString("rank %1").arg(l.rank);
    if (l.stage >= 0)
      label += QString(" s%1").arg(l.stage);
    if (!l.comm)
      p.drawText(QRectF(2, l.y, left_margin - 6, l.height), Qt::AlignVCenter | Qt::AlignLeft, label);
    p.fillRect(QRectF(plot_l, l.y, plot_r - plot_l, l.height), lane_color());
    // Bubbles: the rank's idle gaps (from the metrics), visible part only.
    if (!l.comm && !pn.comparison && static_cast<std::size_t>(l.rank) < pn.gaps_of_rank.size()) {
      const auto& gi = pn.gaps_of_rank[static_cast<std::size_t>(l.rank)];
      auto it = std::lower_bound(gi.begin(), gi.end(), t_lo,
                                 [&](std::uint32_t g, double t) { return pn.m.gaps[g].end_us < t; });
      double last_px = -1;
      for (; it != gi.end() && pn.m.gaps[*it].start_us <= t_hi; ++it) {
        const auto& g = pn.m.gaps[*it];
        const double x0 = clamp_x(x_of(g.start_us)), x1 = clamp_x(x_of(g.end_us));
        if (x1 - x0 < 0.5 && std::floor(x0) == last_px)
          continue;
        last_px = std::floor(x0);
        p.fillRect(QRectF(x0, l.y, std::max(x1 - x0, 0.5), l.height), bubble_color());
      }
    }
    // Actions: binary search the first whose end reaches the view, skip sub-pixel runs.
    const auto& ev = pn.t.events;
    std::size_t k = static_cast<std::size_t>(std::lower_bound(l.max_end.begin(), l.max_end.end(), t_lo) - l.max_end.begin());
    const std::size_t n = l.events.size();
    const bool outline = true;
    while (k < n) {
      const auto& e = ev[l.events[k]];
      if (e.start_us > t_hi)
        break;
      const double x0 = x_of(e.start_us), x1 = x_of(e.end_us);
      const double cx0 = clamp_x(x0), cx1 = clamp_x(x1);
      QRectF box(cx0, l.y + 1, std::max(cx1 - cx0, 1.0), l.height - 2);
      if (x1 - x0 < 1.0) {
        // Everything that starts within this pixel column is one 1-pixel box.
        const double col_end_t = t_of(std::floor(x0) + 1.0);
        auto first = l.events.begin() + static_cast<std::ptrdiff_t>(k);
        auto next = std::lower_bound(first, l.events.end(), col_end_t,
                                     [&](std::uint32_t a, double t) { return ev[a].start_us < t; });
        const std::size_t next_k = std::max<std::size_t>(k + 1, static_cast<std::size_t>(next - l.events.begin()));
        p.fillRect(box, pn.comparison ? error_color(pn.error_of[l.events[k]]) : action_color(e.act));
        drawn_ += next_k - k;
        k = next_k;
        continue;
      }
      ++drawn_;
      if (l.comm) {
        p.fillRect(box, action_color(e.act));
        if (e.peer >= 0 && arrows.size() < 5000) { // a thin arrow to the receiving rank's lanes
          for (const lane& to : pn.lanes)
            if (to.rank == e.peer && !to.comm) {
              arrows.push_back({QPointF(cx1, l.y + l.height / 2), QPointF(cx1, to.y + (to.y > l.y ? 0 : to.height))});
              break;
            }
        }
        ++k;
        continue;
      }
      const QColor c = pn.comparison ? error_color(pn.error_of[l.events[k]]) : action_color(e.act);
      if (pn.comparison)
        p.fillRect(box, c);
      else
        paint_action_box(p, box, e.act);
      const bool highlighted = selected_mb_ != no_microbatch && e.act.microbatch == selected_mb_;
      if (critical_path_ && l.events[k] < pn.on_critical_path.size() && pn.on_critical_path[l.events[k]]) {
        p.setPen(QPen(critical_path_color(), 3));
        p.drawRect(box.adjusted(1.5, 1.5, -1.5, -1.5));
      } else if (highlighted) {
        p.setPen(QPen(Qt::black, 2));
        p.drawRect(box.adjusted(1, 1, -1, -1));
      } else if (outline && box.width() >= 4) {
        p.setPen(QPen(c.darker(140), 1));
        p.drawRect(box.adjusted(0, 0, -1, -1));
      }
      if (box.width() >= 22) {
        const QString text = QString::fromStdString(to_string(e.act));
        if (fm.horizontalAdvance(text) + 4 <= box.width()) {
          p.setPen(e.act.kind == action_kind::forward || e.act.kind == action_kind::backward_weight ? Qt::black : Qt::white);
          p.drawText(box, Qt::AlignCenter, text);
        }
      }
      ++k;
    }
    // Bubble fraction at the lane's end (once per rank, on its first compute lane).
    const bool first_of_rank = &l == &pn.lanes.front() || (&l - 1)->rank != l.rank;
    if (!l.comm && first_of_rank && static_cast<std::size_t>(l.rank) < pn.m.ranks.size()) {
      p.setPen(Qt::black);
      p.drawText(QRectF(plot_r + 4, l.y, right_margin - 6, l.height), Qt::AlignVCenter | Qt::AlignLeft,
                 QString("%1%").arg(100 * pn.m.ranks[static_cast<std::size_t>(l.rank)].bubble_fraction, 0, 'f', 1));
    }
  }
  // Memory curve per rank, scaled to the trace's peak.
  if (!pn.t.memory.empty() && pn.m.peak_memory > 0) {
    for (int r = 0; r < pn.t.num_ranks; ++r) {
      const double y0 = pn.memory_y[static_cast<std::size_t>(r)];
      if (y0 < 0)
        continue;
      p.fillRect(QRectF(plot_l, y0, plot_r - plot_l, memory_height), memory_color());
      p.setPen(Qt::darkGray);
      p.drawText(QRectF(2, y0, left_margin - 6, memory_height), Qt::AlignVCenter | Qt::AlignLeft, "  memory");
      const auto curve = memory_curve(pn.t, r);
      QPainterPath path;
      bool started = false;
      double prev_y = y0 + memory_height;
      for (const auto& s : curve) {
        const double x = clamp_x(x_of(s.t_us));
        const double y = y0 + memory_height - (memory_height - 2) * double(s.bytes) / double(pn.m.peak_memory);
        if (!started) {
          path.moveTo(x, y);
          started = true;
        } else {
          path.lineTo(x, prev_y);
          path.lineTo(x, y);
        }
        prev_y = y;
      }
      if (started)
        path.lineTo(plot_r, prev_y);
      p.setPen(QPen(memory_line_color(), 1.5));
      p.drawPath(path);
      p.setPen(Qt::darkGray);
      p.drawText(QRectF(plot_r + 4, y0, right_margin - 6, memory_height), Qt::AlignVCenter | Qt::AlignLeft,
                 bytes_text(pn.m.ranks[static_cast<std::size_t>(r)].peak_memory));
    }
  }
  p.setPen(QPen(QColor(50, 50, 50, 180), 1));
  p.setBrush(QColor(50, 50, 50, 180));
  for (const auto& [a, b] : arrows) {
    p.drawLine(a, b);
    const double d = b.y() > a.y() ? -4 : 4;
    const QPointF head[3] = {b, QPointF(b.x() - 3, b.y() + d), QPointF(b.x() + 3, b.y() + d)};
    p.drawPolygon(head, 3);
  }
  p.setBrush(Qt::NoBrush);
  // Markers: a tick across all lanes of the marker's rank, red (the simulator's OOM) or blue (a step).
  for (const auto& mk : pn.t.markers) {
    const double x = x_of(mk.t_us);
    if (x < plot_l - 1 || x > plot_r + 1)
      continue;
    double y0 = -1, y1 = -1;
    for (const lane& l : pn.lanes)
      if (l.rank == mk.rank) {
        y0 = y0 < 0 ? l.y : std::min(y0, l.y);
        y1 = std::max(y1, l.y + l.height);
      }
    if (y0 < 0)
      continue;
    p.fillRect(QRectF(x - 1, y0, 3, y1 - y0), is_step_marker(mk) ? step_marker_color() : marker_color());
  }
  // Dependencies of the selected action.
  if (selected_ && panels_[selected_->panel].get() == &pn) {
    const auto sel = event_rect(selected_->panel, selected_->event);
    p.setPen(QPen(QColor(200, 0, 0), 2));
    for (auto d : deps_) {
      const auto dr = event_rect(selected_->panel, d);
      if (sel && dr)
        p.drawLine(QPointF(dr->right(), dr->center().y()), QPointF(sel->left(), sel->center().y()));
    }
  }
}

std::optional<QRectF> TimelineView::event_rect(std::size_t panel_index, std::size_t event_index) const {
  if (panel_index >= panels_.size())
    return std::nullopt;
  const panel& pn = *panels_[panel_index];
  if (event_index >= pn.t.events.size())
    return std::nullopt;
  const auto& e = pn.t.events[event_index];
  for (const auto& l : pn.lanes) {
    if (l.rank != e.rank || l.comm == is_compute(e.act.kind) || (l.stage >= 0 && l.stage != e.act.stage))
      continue;
    return QRectF(x_of(e.start_us), l.y + 1, std::max(x_of(e.end_us) - x_of(e.start_us), 1.0), l.height - 2);
  }
  return std::nullopt;
}

std::optional<TimelineView::hit> TimelineView::hit_at(QPointF pos) const {
  if (pos.x() < left_margin || pos.x() > width() - right_margin)
    return std::nullopt;
  const double t = t_of(pos.x());
  const double slack = 2 * us_per_px_;
  for (std::size_t pi = 0; pi < panels_.size(); ++pi) {
    const panel& pn = *panels_[pi];
    for (const auto& l : pn.lanes) {
      if (pos.y() < l.y || pos.y() >= l.y + l.height)
        continue;
      auto k = static_cast<std::size_t>(std::lower_bound(l.max_end.begin(), l.max_end.end(), t - slack) - l.max_end.begin());
      std::optional<std::size_t> best;
      for (; k < l.events.size() && pn.t.events[l.events[k]].start_us <= t + slack; ++k) {
        const auto& e = pn.t.events[l.events[k]];
        if (e.end_us + slack >= t) {
          best = l.events[k];
          if (e.start_us <= t && t <= e.end_us)
            break;
        }
      }
      if (best)
        return hit{pi, *best};
      return std::nullopt;
    }
  }
  return std::nullopt;
}

const trace_marker* TimelineView::marker_at(QPointF pos) const {
  for (const auto& pn : panels_)
    for (const auto& mk : pn->t.markers) {
      if (std::abs(x_of(mk.t_us) - pos.x()) > 3)
        continue;
      for (const auto& l : pn->lanes)
        if (l.rank == mk.rank && pos.y() >= l.y && pos.y() < l.y + l.height)
          return &mk;
    }
  return nullptr;
}

QString TimelineView::tooltip_at(QPointF pos) const {
  if (const auto* mk = marker_at(pos))
    return QString("%1 on rank %2 at %3\n%4")
        .arg(QString::fromStdString(mk->name))
        .arg(mk->rank)
        .arg(us_text(mk->t_us))
        .arg(QString::fromStdString(mk->detail));
  const auto h = hit_at(pos);
  if (!h)
    return {};
  const auto& e = panels_[h->panel]->t.events[h->event];
  QString s = QString("%1 on rank %2\nstage %3").arg(QString::fromStdString(to_string(e.act))).arg(e.rank).arg(e.act.stage);
  if (e.act.microbatch != no_microbatch)
    s += QString(", micro-batch %1").arg(e.act.microbatch);
  s += QString("\nkind %1\nstart %2\nduration %3")
           .arg(QString::fromStdString(std::string(to_string(e.act.kind))))
           .arg(us_text(e.start_us - time_origin_us())) // as the axis counts
           .arg(us_text(e.duration_us()));
  if (e.bytes)
    s += QString("\nbytes %1 (%2)").arg(e.bytes).arg(bytes_text(e.bytes));
  if (e.peer >= 0)
    s += QString("\npeer rank %1").arg(e.peer);
  const panel& pn = *panels_[h->panel];
  if (pn.comparison) {
    const auto [start, dur] = pn.predicted[h->event];
    s += QString("\npredicted: start %1, duration %2\nmeasured: start %3, duration %4\nerror %5%")
             .arg(us_text(start))
             .arg(us_text(dur))
             .arg(us_text(e.start_us - panels_[1]->m.start_us))
             .arg(us_text(e.duration_us()))
             .arg(100 * pn.error_of[h->event], 0, 'f', 1);
  }
  return s;
}

double TimelineView::time_origin_us() const { return data_range().first; }

void TimelineView::clear_selection() {
  const bool had = selected_.has_value();
  selected_.reset();
  selected_mb_ = no_microbatch;
  deps_.clear();
  if (had && on_selection)
    on_selection();
}

std::optional<double> TimelineView::time_at(double x) const {
  if (x < left_margin || x > width() - right_margin)
    return std::nullopt;
  return t_of(x);
}

QString TimelineView::selection_text() const {
  if (!selected_)
    return {};
  const panel& pn = *panels_[selected_->panel];
  const auto& e = pn.t.events[selected_->event];
  const QString what = QString("%1 on rank %2: ").arg(QString::fromStdString(to_string(e.act))).arg(e.rank);
  if (pn.comparison)
    return what + QString("predicted %1, measured %2, error %3%")
                      .arg(us_text(pn.predicted[selected_->event].second))
                      .arg(us_text(e.duration_us()))
                      .arg(100 * pn.error_of[selected_->event], 0, 'f', 1);
  return what + us_text(e.duration_us());
}

std::optional<int> TimelineView::select_at(QPointF pos) {
  const auto h = hit_at(pos);
  deps_.clear();
  selected_ = h;
  selected_mb_ = no_microbatch;
  if (h) {
    const panel& pn = *panels_[h->panel];
    selected_mb_ = pn.t.events[h->event].act.microbatch;
    deps_ = data_dependencies(pn.t, h->event);
  }
  update();
  if (on_selection)
    on_selection();
  if (!h)
    return std::nullopt;
  return selected_mb_;
}

QStringList TimelineView::errors() const {
  QStringList out;
  for (const auto& pn : panels_)
    if (!pn->error.empty())
      out << QString::fromStdString(pn->error);
  return out;
}

void TimelineView::wheelEvent(QWheelEvent* e) {
  const double steps = e->angleDelta().y() / 120.0;
  if (e->modifiers() & Qt::ShiftModifier)
    pan_pixels(steps * 60);
  else
    zoom(std::pow(1.25, steps), e->position().x());
  e->accept();
}

void TimelineView::keyPressEvent(QKeyEvent* e) {
  const double cx = left_margin + (width() - left_margin - right_margin) / 2.0;
  switch (e->key()) {
  case Qt::Key_Plus:
  case Qt::Key_Equal: zoom(1.5, cx); break;
  case Qt::Key_Minus: zoom(1 / 1.5, cx); break;
  case Qt::Key_Left: pan_pixels(80); break;
  case Qt::Key_Right: pan_pixels(-80); break;
  case Qt::Key_F:
  case Qt::Key_0:
  case Qt::Key_Home: fit(); break;
  case Qt::Key_End: follow_head(); break;
  case Qt::Key_Escape: select_at(QPointF(-1, -1)); break;
  default: QWidget::keyPressEvent(e); return;
  }
  e->accept();
}

void TimelineView::mousePressEvent(QMouseEvent* e) {
  if (e->button() == Qt::LeftButton) {
    drag_from_ = e->position();
    select_at(e->position());
  }
}

void TimelineView::leaveEvent(QEvent*) {
  if (on_cursor)
    on_cursor(std::nullopt);
}

void TimelineView::mouseMoveEvent(QMouseEvent* e) {
  if (on_cursor)
    on_cursor(time_at(e->position().x()));
  if (drag_from_ && (e->buttons() & Qt::LeftButton)) {
    const double dx = e->position().x() - drag_from_->x();
    if (std::abs(dx) >= 1) {
      pan_pixels(dx);
      drag_from_ = e->position();
    }
  }
}

void TimelineView::mouseReleaseEvent(QMouseEvent*) { drag_from_.reset(); }

bool TimelineView::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(e);
    const QString text = tooltip_at(he->pos());
    if (text.isEmpty())
      QToolTip::hideText();
    else
      QToolTip::showText(he->globalPos(), text, this);
    return true;
  }
  return QWidget::event(e);
}

} // namespace pippy::gui
