#include "pippy/gui/main_window.hpp"

#include <QAction>
#include <QApplication>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QInputDialog>
#include <QKeySequence>
#include <QMenuBar>
#include <QMessageBox>
#include <QFontDatabase>
#include <QPainter>
#include <QPlainTextEdit>
#include <QStatusBar>
#include <QTimer>
#include <QToolBar>
#include <tuple>
#include <algorithm>
#include <cmath>

namespace pippy::gui {

namespace {
constexpr int max_recent = 8;
constexpr int legend_microbatches = 8; // the colour scale shown: the hue of micro-batches 0..7 (it repeats)

QSettings settings() { return QSettings("pippy-cpp", "pippy-view"); }
} // namespace

// ---- legend -------------------------------------------------------------------------------------

LegendWidget::LegendWidget(QWidget* parent) : QWidget(parent) { setMinimumWidth(190); }

QSize LegendWidget::sizeHint() const { return {210, 420}; }

void LegendWidget::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), Qt::white);
  QFont font = p.font();
  font.setPixelSize(11);
  p.setFont(font);
  swatches_.clear();
  const int sw = 30, sh = 14, x = 8, tx = x + sw + 8;
  int y = 6;
  auto heading = [&](const QString& text) {
    QFont bold = font;
    bold.setBold(true);
    p.setFont(bold);
    p.setPen(Qt::black);
    p.drawText(QRect(x, y, width() - 2 * x, 16), Qt::AlignLeft | Qt::AlignVCenter, text);
    p.setFont(font);
    y += 18;
  };
  auto row = [&](const QString& name, const QString& text, const std::function<void(const QRect&)>& draw) {
    const QRect r(x, y, sw, sh);
    draw(r);
    swatches_[name] = r;
    p.setPen(Qt::black);
    p.drawText(QRect(tx, y - 2, width() - tx - 4, sh + 4), Qt::AlignLeft | Qt::AlignVCenter, text);
    y += sh + 6;
  };
  heading("Actions (micro-batch 0)");
  const std::pair<action_kind, QString> kinds[] = {
      {action_kind::forward, "F  forward"},
      {action_kind::backward_input, "I  input gradient"},
      {action_kind::backward_weight, "W  weight gradient"},
      {action_kind::full_backward, "B  full backward (I + W)"},
      {action_kind::optimizer_step, "U  optimizer step"},
  };
  for (const auto& [kind, text] : kinds) {
    const action a{.stage = 0, .kind = kind, .microbatch = kind == action_kind::optimizer_step ? no_microbatch : 0};
    row(QString::fromStdString(std::string(to_string(kind))), text,
        [&](const QRect& r) { TimelineView::paint_action_box(p, QRectF(r), a); });
  }
  row("transfer", "transfer (comm sub-lane)", [&](const QRect& r) { p.fillRect(r, TimelineView::transfer_color()); });
  row("REDUCE_GRAD", "gradients summed over the replicas (comm sub-lane)", [&](const QRect& r) {
    TimelineView::paint_action_box(p, QRectF(r), action{.stage = 0, .kind = action_kind::reduce_grad});
  });
  y += 4;
  heading("Micro-batches (hue)");
  for (int mb = 0; mb < legend_microbatches; ++mb) {
    const QRect r(x + mb * (sw / 2 + 4), y, sw / 2, sh);
    p.fillRect(r, TimelineView::action_color(action{.stage = 0, .kind = action_kind::forward, .microbatch = mb}));
    swatches_[QString("micro-batch %1").arg(mb)] = r;
  }
  y += sh + 2;
  p.setPen(Qt::darkGray);
  p.drawText(QRect(x, y, width() - 2 * x, 14), Qt::AlignLeft | Qt::AlignVCenter, "0 1 2 ... 7, then again");
  y += 20;
  heading("Time");
  row("bubble", "bubble: the rank idles", [&](const QRect& r) { p.fillRect(r, TimelineView::bubble_color()); });
  for (const auto& [name, text, colour] : {std::tuple{"OOM marker", "marker: out of memory", TimelineView::marker_color()},
                                          std::tuple{"step marker", "marker: a step begins", TimelineView::step_marker_color()}})
    row(name, text, [&](const QRect& r) { // a tick across a lane, as the timeline draws it
      p.fillRect(r, TimelineView::lane_color());
      p.fillRect(QRect(r.center().x() - 1, r.top(), 3, r.height()), colour);
    });
  row("memory", "memory of the rank", [&](const QRect& r) {
    p.fillRect(r, TimelineView::memory_color());
    p.setPen(QPen(TimelineView::memory_line_color(), 1.5));
    p.drawLine(QPointF(r.left(), r.bottom() - 2), QPointF(r.center().x(), r.bottom() - 2));
    p.drawLine(QPointF(r.center().x(), r.bottom() - 2), QPointF(r.center().x(), r.top() + 2));
    p.drawLine(QPointF(r.center().x(), r.top() + 2), QPointF(r.right(), r.top() + 2));
  });
}

// ---- window -------------------------------------------------------------------------------------

QString MainWindow::keys_text() const {
  QString text = "Timeline\n";
  for (const auto& [keys, what] : TimelineView::key_bindings())
    text += "  " + keys + "\t" + what + "\n";
  text += "\nMenus\n";
  for (const auto& [name, a] : actions_)
    if (!a->shortcut().isEmpty())
      text += "  " + a->shortcut().toString(QKeySequence::NativeText) + "\t" + a->text().remove('&').remove("...") + "\n";
  return text;
}

QAction* MainWindow::add(const QString& name, const QString& text, const QKeySequence& keys, std::function<void()> run) {
  auto* a = new QAction(text, this);
  if (!keys.isEmpty())
    a->setShortcut(keys);
  a->setShortcutContext(Qt::WindowShortcut);
  connect(a, &QAction::triggered, this, [run = std::move(run)] { run(); });
  actions_[name] = a;
  addAction(a); // shortcuts work with the menu bar hidden too
  return a;
}

QAction* MainWindow::action(const QString& name) const {
  const auto it = actions_.find(name);
  return it == actions_.end() ? nullptr : it->second;
}

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  view_ = new TimelineView(this);
  setCentralWidget(view_);
  legend_ = new LegendWidget;
  legend_dock_ = new QDockWidget("Legend", this);
  legend_dock_->setObjectName("legend");
  legend_dock_->setWidget(legend_);
  addDockWidget(Qt::RightDockWidgetArea, legend_dock_);
  summary_ = new QPlainTextEdit;
  summary_->setReadOnly(true);
  summary_->setLineWrapMode(QPlainTextEdit::NoWrap);
  summary_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  summary_dock_ = new QDockWidget("Summary", this);
  summary_dock_->setObjectName("summary");
  summary_dock_->setWidget(summary_);
  addDockWidget(Qt::BottomDockWidgetArea, summary_dock_);
  // A live job's summary grows with it: once a second, as often as anyone reads it.
  summary_timer_ = new QTimer(this);
  connect(summary_timer_, &QTimer::timeout, this, [this] {
    if (!view_->live())
      summary_timer_->stop();
    else if (!summary_dock_->isHidden()) // not closed by the user
      update_summary();
  });

  ask_open = [this] {
    return QFileDialog::getOpenFileNames(this, "Open one or two traces", {},
                                         "Traces (*.json *.jsonl);;All files (*)");
  };
  ask_save = [this](const QString& filter) { return QFileDialog::getSaveFileName(this, "Export", {}, filter); };
  ask_live = [this] {
    bool ok = false;
    const QString spec = QInputDialog::getText(this, "Connect to a live job",
                                               "HOST:PORT of `pippy sim --live PORT` or a job's --live PORT,\n"
                                               "or a FILE.jsonl that a job writes:",
                                               QLineEdit::Normal, "127.0.0.1:7777", &ok);
    return ok ? spec.trimmed() : QString();
  };
  ask_step = [this](int steps) {
    bool ok = false;
    const int k = QInputDialog::getInt(this, "Zoom to a step", QString("Step (0 to %1):").arg(steps - 1), 0, 0,
                                       steps - 1, 1, &ok);
    return ok ? k : -1;
  };

  const double zoom_step = 1.5;
  auto middle = [this] { return TimelineView::left_margin + (view_->width() - TimelineView::left_margin - TimelineView::right_margin) / 2.0; };
  add("open", "&Open...", QKeySequence::Open, [this] {
    const QStringList paths = ask_open();
    if (paths.size() > 2)
      return message("open one or two traces (predicted and measured), not " + QString::number(paths.size()));
    if (!paths.isEmpty())
      open(paths);
  });
  add("reload", "&Reload", QKeySequence(Qt::CTRL | Qt::Key_R), [this] {
    if (!view_->reload())
      message("reload: " + view_->errors().join("; "));
    update_summary();
  });
  // Asks for a name (the format's extension added when it lacks it) and exports.
  auto export_as = [this](const QString& format) {
    const QString ext = "." + format.toLower();
    const QString path = ask_save(format + " image (*" + ext + ")");
    if (!path.isEmpty())
      export_to(path.endsWith(ext, Qt::CaseInsensitive) ? path : path + ext);
  };
  add("export_png", "Export &PNG...", QKeySequence(Qt::CTRL | Qt::Key_E), [export_as] { export_as("PNG"); });
  add("export_svg", "Export &SVG...", QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E), [export_as] { export_as("SVG"); });
  add("quit", "&Quit", QKeySequence::Quit, [this] { close(); });
  add("fit", "&Fit the whole run", QKeySequence(Qt::Key_F), [this] { view_->fit(); });
  add("zoom_in", "Zoom &in", QKeySequence(Qt::Key_Plus), [this, middle, zoom_step] { view_->zoom(zoom_step, middle()); });
  add("zoom_out", "Zoom &out", QKeySequence(Qt::Key_Minus), [this, middle, zoom_step] { view_->zoom(1 / zoom_step, middle()); });
  add("zoom_step", "Zoom to a &step...", QKeySequence(Qt::Key_S), [this] {
    const int n = view_->steps();
    if (n < 2)
      return message("the trace holds one step: Fit shows it");
    if (const int k = ask_step(n); k >= 0)
      view_->zoom_to_step(k);
  });
  auto* follow = add("follow", "Follow the &live run", QKeySequence(Qt::Key_End), [this] {
    if (action("follow")->isChecked())
      view_->follow_head();
    else
      view_->pan_pixels(0); // stops following, keeps the view
  });
  follow->setCheckable(true);
  auto* critical = add("critical_path", "&Critical path", QKeySequence(Qt::Key_C),
                       [this] { view_->show_critical_path(action("critical_path")->isChecked()); });
  critical->setCheckable(true);
  // Checked while their docks show, whoever hides them.
  for (auto [name, dock, text, key] : {std::tuple{"legend", legend_dock_, "&Legend", Qt::Key_L},
                                       std::tuple{"summary", summary_dock_, "S&ummary", Qt::Key_U}}) {
    QAction* a = dock->toggleViewAction();
    a->setText(text);
    a->setShortcut(QKeySequence(key));
    actions_[name] = a;
    addAction(a);
  }
  add("connect", "&Connect to a live job...", QKeySequence(Qt::CTRL | Qt::Key_L), [this] {
    if (const QString spec = ask_live(); !spec.isEmpty())
      connect_live(spec);
  });
  add("keys", "&Keys and mouse", QKeySequence(Qt::Key_Question), [this] {
    QMessageBox box(QMessageBox::NoIcon, "pippy-view: keys and mouse", keys_text(), QMessageBox::Close, this);
    box.exec();
  });

  QMenu* file = menuBar()->addMenu("&File");
  file->addAction(action("open"));
  recent_menu_ = file->addMenu("Open &recent");
  file->addAction(action("reload"));
  file->addSeparator();
  file->addAction(action("export_png"));
  file->addAction(action("export_svg"));
  file->addSeparator();
  file->addAction(action("quit"));
  QMenu* viewm = menuBar()->addMenu("&View");
  for (const char* n : {"fit", "zoom_in", "zoom_out", "zoom_step", "follow", "critical_path"})
    viewm->addAction(action(n));
  viewm->addSeparator();
  viewm->addAction(action("legend"));
  viewm->addAction(action("summary"));
  QMenu* live = menuBar()->addMenu("&Live");
  live->addAction(action("connect"));
  live->addAction(action("follow"));
  QMenu* help = menuBar()->addMenu("&Help");
  help->addAction(action("keys"));

  QToolBar* tools = addToolBar("Main");
  tools->setObjectName("main toolbar");
  for (const char* n : {"open", "reload", "export_png", "fit", "zoom_in", "zoom_out", "follow", "connect", "keys"})
    tools->addAction(action(n));

  cursor_label_ = new QLabel;
  selection_label_ = new QLabel;
  message_label_ = new QLabel;
  statusBar()->addWidget(cursor_label_);
  statusBar()->addWidget(selection_label_);
  statusBar()->addPermanentWidget(message_label_);
  view_->on_cursor = [this](std::optional<double> t) {
    cursor_us_ = t;
    update_status();
  };
  view_->on_selection = [this] { update_status(); };
  rebuild_recent_menu();
  update_status();
  update_title();
}

void MainWindow::message(const QString& text) {
  message_label_->setText(text);
}

bool MainWindow::open(const QStringList& paths) {
  view_->close_all();
  action("follow")->setChecked(false);
  const bool ok = view_->open_files(paths);
  remember(paths);
  update_summary();
  message(ok ? QString() : "could not open: " + view_->errors().join("; "));
  update_title();
  return ok;
}

bool MainWindow::connect_live(const QString& spec) {
  const bool ok = view_->start_live(spec);
  action("follow")->setChecked(true);
  update_summary();
  summary_timer_->start(1000);
  update_title();
  return ok;
}

bool MainWindow::export_to(const QString& path) {
  QString note;
  const bool ok = view_->export_to(path, TimelineView::default_export_width, 0, &note);
  message(ok ? "exported " + path + (note.isEmpty() ? "" : " (" + note + ")") : note);
  return ok;
}

void MainWindow::remember(const QStringList& paths) {
  QStringList recent = recent_files();
  for (auto it = paths.rbegin(); it != paths.rend(); ++it) {
    const QString abs = QFileInfo(*it).absoluteFilePath();
    recent.removeAll(abs);
    recent.prepend(abs);
  }
  while (recent.size() > max_recent)
    recent.removeLast();
  settings().setValue("recent", recent);
  rebuild_recent_menu();
}

QStringList MainWindow::recent_files() const { return settings().value("recent").toStringList(); }

void MainWindow::rebuild_recent_menu() {
  recent_menu_->clear();
  const QStringList recent = recent_files();
  for (const QString& path : recent)
    recent_menu_->addAction(path, this, [this, path] { open({path}); });
  recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::update_status() {
  cursor_label_->setText(cursor_us_ ? "t = " + TimelineView::time_text(*cursor_us_ - view_->time_origin_us(), 'f', 3) : QString());
  const QString sel = view_->selection_text();
  selection_label_->setText(sel.isEmpty() ? QString() : "selected " + sel);
}

QString MainWindow::status_text() const {
  QStringList parts;
  for (const QLabel* l : {cursor_label_, selection_label_, message_label_})
    if (!l->text().isEmpty())
      parts << l->text();
  return parts.join("  |  ");
}

QString MainWindow::summary_text() const { return summary_->toPlainText(); }

void MainWindow::update_summary() {
  QString text;
  const auto& panels = view_->panels();
  for (const auto& pn : panels) {
    if (pn->comparison || pn->t.events.empty())
      continue;
    text += QString::fromStdString(pn->title) + "\n" + QString::fromStdString(format_summary(pn->t, pn->m, 5)) + "\n";
  }
  if (view_->comparison())
    text += "trace diff: " + QString::fromStdString(panels[0]->title) + " (predicted) against " +
            QString::fromStdString(panels[1]->title) + " (measured)\n" +
            QString::fromStdString(format_diff(diff_traces(panels[0]->t, panels[1]->t, panels[0]->m, panels[1]->m)));
  summary_->setPlainText(text);
}

void MainWindow::update_title() {
  const QStringList files = view_->files();
  QString title = "pippy-view";
  if (!files.isEmpty())
    title += " - " + files.join(" vs ");
  else if (!view_->live_status().isEmpty())
    title += " - " + view_->live_status();
  setWindowTitle(title);
}

} // namespace pippy::gui
