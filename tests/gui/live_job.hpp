#pragma once
// Starts `pippy sim ... --live 0` as a separate process (the job a live viewer follows). Needs PIPPY_EXE.
#include <catch2/catch.hpp>

#include <QProcess>
#include <QRegularExpression>
#include <string>

#include "gui_test_util.hpp"

namespace pippy::test {

// Starts `pippy sim ARGS --live 0 --live-wait-s 20 --trace TRACE` and returns the port it prints.
inline int start_sim_job(QProcess& job, QStringList args, const std::string& trace_path) {
  args.prepend("sim");
  args << "--live" << "0" << "--live-wait-s" << "20" << "--trace" << QString::fromStdString(trace_path);
  job.start(PIPPY_EXE, args);
  REQUIRE(job.waitForStarted(10000));
  QString err;
  const QRegularExpression re("live: publishing on 127\\.0\\.0\\.1:(\\d+)");
  QRegularExpressionMatch m;
  REQUIRE(wait_for([&] {
    err += QString::fromUtf8(job.readAllStandardError());
    m = re.match(err);
    return m.hasMatch() || job.state() == QProcess::NotRunning;
  }, 10000));
  INFO(err.toStdString());
  REQUIRE(m.hasMatch());
  return m.captured(1).toInt();
}

// Waits for the job to exit; true when it exited normally with status 0.
inline bool sim_job_succeeded(QProcess& job) {
  return wait_for([&] { return job.state() == QProcess::NotRunning; }, 30000) && job.exitStatus() == QProcess::NormalExit &&
         job.exitCode() == 0;
}

} // namespace pippy::test
