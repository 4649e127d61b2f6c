#pragma once
#include <QElapsedTimer>
#include <QImage>
#include <QString>
#include <QStringList>
#include <QTimer>
#include <QWidget>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pippy/traces/live.hpp"
#include "pippy/traces/metrics.hpp"
#include "pippy/traces/trace.hpp"

namespace pippy::gui {

// One horizontal lane: a rank (or one stage of a rank that holds several), or a rank's
// communication sub-lane. Events are indices into the panel's trace, sorted by start, with the
// running maximum of their ends so the visible ones are found by binary search.
struct lane {
  int rank = 0;
  int stage = -1; // -1: the rank's only stage, whichever it is
  int only_stage = -1; // with stage == -1, the stage seen so far
  bool comm = false;
  std::vector<std::uint32_t> events;
  std::vector<double> max_end;
  bool sorted = true;
  double y = 0, height = 0; // set by layout
};

// One trace drawn as a block of lanes, with its metrics and the error it failed with, if any.
struct panel {
  std::string title;
  std::string source; // the file it was read from (reloaded from there), empty for a live or added trace
  trace t;
  trace_metrics m;
  std::vector<lane> lanes;
  std::vector<std::vector<std::uint32_t>> gaps_of_rank; // indices into m.gaps, by start
  std::vector<double> memory_y;                         // per rank, top of its memory strip (or -1)
  std::vector<char> on_critical_path;                   // per event: on m.critical_path
  std::string error;
  // The comparison of two traces of one schedule: t holds the measured trace's compute actions that the
  // prediction has too, at their measured times; per event, its error and the predicted start (from the
  // predicted trace's first start) and duration.
  bool comparison = false;
  std::vector<double> error_of;
  std::vector<std::pair<double, double>> predicted; // (start from the first start, duration)
  double top = 0, height = 0; // set by layout
  void rebuild();             // lanes and metrics from t
  bool add_event(std::size_t i); // false: its rank or stage has no lane yet (call rebuild)
  void finish_update(bool with_metrics = true); // sorts lanes touched by add_event, recomputes metrics
};

// The Gantt timeline of one or two traces on one time axis (the second below the first), with their
// summaries side by side above. Drawing only touches what is visible. GUI thread only.
class TimelineView : public QWidget {
public:
  explicit TimelineView(QWidget* parent = nullptr);
  ~TimelineView() override;

  // Opens files (Chrome JSON, or JSON lines when the name ends in .jsonl); a file that fails becomes
  // a panel showing its error, which is also printed to stderr. Returns false if any failed.
  bool open_files(const QStringList& paths);
  void add_trace(trace t, const std::string& title);
  void close_all();  // every panel, and the live source
  void close_live(); // the live source and its panel
  bool live() const { return live_panel_ != nullptr; } // a live source is followed (or being connected)
  // Reads every panel's file again (a trace rewritten by a new run); the live panel keeps following.
  bool reload();
  QStringList files() const; // the files of the open panels, in order
  // Follows a running job: "HOST:PORT" or a growing JSON-lines file. A file that cannot be opened
  // gives an error panel. A HOST:PORT is connected without blocking the GUI thread (the timer finishes
  // the connect); one that refuses or times out is retried with a bounded back-off (0.25 s doubling
  // to 2 s: the job may start later). Returns whether the source is open or its connect is under way.
  bool start_live(const QString& spec, int poll_ms = 50);
  void poll_live(); // reads what arrived (the timer calls it); never waits on the network
  // "connecting to HOST:PORT...", "connected to HOST:PORT", the error and when it is retried, or
  // "HOST:PORT (ended)"; also shown in the live panel's title and the window title.
  QString live_status() const { return QString::fromStdString(live_status_); }
  static constexpr int max_retry_delay_ms = 2000;

  // View: time at the left edge and microseconds per pixel.
  void fit();
  // Live: show the newest events (the whole run while fitted, else the head at the current zoom).
  void follow_head();
  void zoom(double factor, double anchor_x);
  void pan_pixels(double dx);
  void show_range(double t_lo, double t_hi); // [t_lo, t_hi] across the plot
  // Steps of the first trace (traces' steps_in: 1 unless it was measured over several) and the view on
  // step k of them (its first start to its last end). False when there is no step k.
  int steps() const;
  bool zoom_to_step(int k);
  bool following() const { return follow_; }
  double view_start_us() const { return t0_; }
  double us_per_pixel() const { return us_per_px_; }

  void paint(QPainter& p, const QRect& area);
  QImage render_image(QSize size); // fits the view to the size and draws into an image
  // The height in pixels that shows every lane of every open trace (lanes have a fixed height).
  int fitting_height();
  // With two traces of one schedule open (predicted, then measured: traces' why_not_comparable says
  // none), a third block compares them: one lane per rank, each measured action coloured by its error
  // against the prediction (comparison_error). The comparison panel, or null.
  const panel* comparison() const;
  // An action's error: the larger of its start's and its duration's difference (each trace's times from
  // its own first start) over the predicted duration. 0 is drawn green, error_scale or more red.
  static double comparison_error(double predicted_start, double predicted_us, double measured_start, double measured_us);
  static QColor error_color(double error);
  static constexpr double error_scale = 0.5;
  // The critical path of each trace (traces' compute_metrics) outlined on the timeline.
  void show_critical_path(bool on);
  bool critical_path_shown() const { return critical_path_; }
  static QColor critical_path_color();

  // Writes the whole run, fitted, as PNG or (by the name's .svg) SVG: `pippy-view --export` and the File
  // menu alike. height 0: every lane; a height too small for them grows to fit (up to 20000 px), and
  // `note` says so. False, with `note` saying why, when the file cannot be written.
  bool export_to(const QString& path, int width, int height, QString* note = nullptr);
  static constexpr int default_export_width = 1600, max_export_size = 20000;

  // For tests and the status bar.
  const std::vector<std::unique_ptr<panel>>& panels() const { return panels_; }
  QStringList errors() const;
  std::size_t drawn_actions() const { return drawn_; } // actions intersecting the view in the last paint
  std::optional<QRectF> event_rect(std::size_t panel_index, std::size_t event_index) const;
  // Selects the action under a point (as a click does); returns its micro-batch.
  std::optional<int> select_at(QPointF pos);
  std::vector<std::size_t> highlighted_dependencies() const { return deps_; }
  QString tooltip_at(QPointF pos) const;
  // The time under x (the cursor), when x is over the plot.
  std::optional<double> time_at(double x) const;
  // Where the time axis counts from: the first start of the open traces, so that traces on the epoch's
  // clock (measured runs, torch.profiler files: about 1.7e15 us) read 0, 1 ms, 2 ms... not 1.796e+09 s.
  double time_origin_us() const;
  // What the selection is: the selected action, its rank and duration ("" when none).
  QString selection_text() const;
  // Called with the time under the cursor (nullopt when it leaves the plot) and after each selection.
  std::function<void(std::optional<double>)> on_cursor;
  std::function<void()> on_selection;

  // Every key and mouse gesture, as (keys, what it does): the help dialog and `pippy-view --help`.
  static const std::vector<std::pair<QString, QString>>& key_bindings();

  // Times of the time axis' ticks within [t_lo, t_hi]: 1, 2 or 5 x 10^k apart, at most 10-odd for a
  // finite view and never more than max_ticks, each distinct, finite and advancing (a step lost in
  // the spacing of doubles far from zero is widened until it is not). Empty when the view is not finite.
  static std::vector<double> axis_ticks(double t_lo, double t_hi, std::size_t max_ticks = 64);
  // Times outside +-max_view_us are drawn at this bound: a span of two of them (2e300) stays finite.
  static constexpr double max_view_us = 1e300;

  // A time in us, ms or s by its size, as QString::number(value, format, precision) writes the number.
  static QString time_text(double us, char format = 'g', int precision = 4);
  static QColor bubble_color();
  static QColor marker_color(); // the red tick of a trace_marker (the simulator's OOM) across its rank's lanes
  static QColor step_marker_color(); // the tick of a "step K" marker (a live job's step boundary)
  static bool is_step_marker(const trace_marker& m);
  static QColor transfer_color(); // a transfer on its rank's communication sub-lane
  static QColor lane_color();     // a lane's background
  static QColor memory_color();   // a rank's memory strip, and its curve
  static QColor memory_line_color();
  static QColor action_color(const action& a); // RGB: hue by micro-batch, shade by kind
  // An action's box as the timeline draws it: its colour, and I and W's patterns. The legend uses it too.
  static void paint_action_box(QPainter& p, const QRectF& box, const action& a);

private:
  static QColor action_color_hsv(const action& a);

public:

  static constexpr double header_line = 16, axis_height = 20, left_margin = 96, right_margin = 64;
  static constexpr double lane_height = 22, comm_height = 8, memory_height = 26, panel_gap = 14;

protected:
  void paintEvent(QPaintEvent*) override;
  void resizeEvent(QResizeEvent*) override;
  void wheelEvent(QWheelEvent*) override;
  void keyPressEvent(QKeyEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  void mouseMoveEvent(QMouseEvent*) override;
  void mouseReleaseEvent(QMouseEvent*) override;
  void leaveEvent(QEvent*) override;
  bool event(QEvent*) override;

private:
  void layout(double width);
  bool waiting_for_file() const; // a live FILE.jsonl that does not exist yet: retried like a stream
  double header_height() const;
  double x_of(double t) const { return left_margin + (t - t0_) / us_per_px_; }
  double t_of(double x) const { return t0_ + (x - left_margin) * us_per_px_; }
  std::pair<double, double> data_range() const;
  struct hit {
    std::size_t panel, event;
  };
  std::optional<hit> hit_at(QPointF pos) const;
  const trace_marker* marker_at(QPointF pos) const; // a marker's tick within 3 px of pos, on its rank's lanes
  void draw_panel(QPainter& p, panel& pn, const QRect& area);
  void update_comparison(); // after the open traces change
  const trace* first_trace() const; // the first open trace with events, or null
  void clear_selection();   // and tells on_selection
  void set_live_status(const std::string& status);
  void schedule_retry(const std::string& why);

  std::vector<std::unique_ptr<panel>> panels_;
  double t0_ = 0, us_per_px_ = 1;
  bool fitted_ = false, follow_ = false, fit_mode_ = true;
  std::size_t drawn_ = 0;
  std::unique_ptr<live_reader> live_;
  panel* live_panel_ = nullptr;
  std::string live_spec_;
  std::string live_status_;
  bool live_announced_ = false; // "connected" shown for the current reader
  int retry_delay_ms_ = 0;      // back-off before the next connect attempt; 0 = none yet
  QElapsedTimer retry_clock_;
  QElapsedTimer metrics_clock_;
  bool metrics_stale_ = false;
  QTimer* timer_ = nullptr;
  std::optional<hit> selected_;
  int selected_mb_ = no_microbatch;
  std::vector<std::size_t> deps_;
  std::optional<QPointF> drag_from_;
  bool critical_path_ = false;
};

// Loads a trace for the viewer: Chrome JSON, or JSON lines when the path ends in .jsonl. Throws input_error.
trace load_any_trace(const std::string& path);

} // namespace pippy::gui
