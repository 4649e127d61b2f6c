#pragma once
// pippy-view's desktop window: the timeline with a menu bar, a toolbar, a legend and a status bar.
#include <QLabel>
#include <QMainWindow>
#include <QSettings>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "pippy/gui/timeline_view.hpp"

class QAction;
class QDockWidget;
class QMenu;
class QPlainTextEdit;
class QTimer;

namespace pippy::gui {

// What the colours, shades and patterns of the timeline mean: each action kind drawn as the timeline
// draws it (TimelineView::paint_action_box), the micro-batch colour scale, transfers, bubbles and markers.
class LegendWidget : public QWidget {
public:
  explicit LegendWidget(QWidget* parent = nullptr);
  QSize sizeHint() const override;
  // Where each swatch is drawn, by its name ("F", "I", "W", "B", "U", "transfer", "bubble", "OOM marker",
  // "step marker", "micro-batch 0", ...): for tests and tooltips.
  const std::map<QString, QRect>& swatches() const { return swatches_; }

protected:
  void paintEvent(QPaintEvent*) override;

private:
  std::map<QString, QRect> swatches_;
};

class MainWindow : public QMainWindow {
public:
  explicit MainWindow(QWidget* parent = nullptr);

  TimelineView& view() { return *view_; }
  LegendWidget& legend() { return *legend_; }
  // Opens one or two traces in place of what is open, and remembers them as recent.
  bool open(const QStringList& paths);
  bool connect_live(const QString& spec); // HOST:PORT or FILE.jsonl
  // The File menu's export: PNG or SVG by the name, as `pippy-view --export` writes it (whole run, fitted,
  // every lane, default width). The note (a grown height) or error goes to the status bar.
  bool export_to(const QString& path);
  QStringList recent_files() const;
  QString status_text() const; // the status bar: cursor time, selection
  // The summary dock's text: each trace's `pippy trace summary` (step time, bubble and peak memory per
  // rank, critical path, idle causes) and, for two traces of one schedule, `pippy trace diff`'s.
  QString summary_text() const;
  // Menu actions by name: open, reload, export_png, export_svg, quit, fit, zoom_in, zoom_out, zoom_step,
  // follow, critical_path, legend, summary, connect, keys.
  QAction* action(const QString& name) const;
  // How the actions that ask the user ask: replaced in tests (the dialogs would wait for a person).
  std::function<QStringList()> ask_open;                  // file dialog, one or two traces
  std::function<QString(const QString& filter)> ask_save; // file dialog, a path to export to
  std::function<QString()> ask_live;                      // HOST:PORT or a FILE.jsonl
  std::function<int(int steps)> ask_step;                 // a step in [0, steps), -1: cancelled
  // The help dialog's text: every key and gesture of the timeline, then each menu action's shortcut.
  QString keys_text() const;

private:
  QAction* add(const QString& name, const QString& text, const QKeySequence& keys, std::function<void()> run);
  void remember(const QStringList& paths);
  void rebuild_recent_menu();
  void update_status();
  void update_title();
  void update_summary();
  void message(const QString& text); // the status bar's right side: what the last action said

  TimelineView* view_ = nullptr;
  LegendWidget* legend_ = nullptr;
  QDockWidget* legend_dock_ = nullptr;
  QDockWidget* summary_dock_ = nullptr;
  QPlainTextEdit* summary_ = nullptr;
  QTimer* summary_timer_ = nullptr; // refreshes the summary while a live job runs
  QMenu* recent_menu_ = nullptr;
  QLabel* cursor_label_ = nullptr;
  QLabel* selection_label_ = nullptr;
  QLabel* message_label_ = nullptr;
  std::map<QString, QAction*> actions_;
  std::optional<double> cursor_us_;
};

} // namespace pippy::gui
