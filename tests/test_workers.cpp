// Worker processes: App::run({.workers = N, .threads = M}) forks for real. The processes report
// what they do through a pipe (one write(2) per line, atomic below PIPE_BUF), which the test reads
// once run() has returned; a watcher process, forked before run(), waits on another pipe for every
// worker to have started before it signals, so nothing here waits on time.
#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// Under ThreadSanitizer (g++ and clang spell it differently).
#if defined(__SANITIZE_THREAD__)
#define TASKYARD_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TASKYARD_TEST_TSAN 1
#endif
#endif

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
using taskyard::App;

namespace {

/// One line a process wrote: what happened, in which worker (-1: the main process), in which pid.
struct record {
  std::string what;
  long worker = -1;
  pid_t pid = 0;
};

/// A pipe that every process of a run writes lines to.
class journal {
public:
  journal() { REQUIRE(::pipe2(fds_, O_CLOEXEC) == 0); }
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;
  ~journal() {
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }

  /// Writes "<what> <worker> <pid>" from whichever process calls it.
  void write(const std::string& what, const App& app) const {
    const auto index = app.worker_index();
    write_line(what + ' ' + std::to_string(index ? static_cast<long>(*index) : -1L) + ' ' +
               std::to_string(::getpid()));
  }

  void write_line(std::string line) const {
    line += '\n';
    const auto n = ::write(fds_[1], line.data(), line.size());
    (void)n; // a short write would show up as a missing record
  }

  /// Reads what was written, once every writer is gone (call it after run() has returned).
  std::vector<record> read_all() {
    ::close(fds_[1]);
    fds_[1] = -1;
    std::string text;
    char buffer[4096];
    for (;;) {
      const auto n = ::read(fds_[0], buffer, sizeof buffer);
      if (n > 0) {
        text.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    std::vector<record> out;
    std::istringstream in(text);
    record r;
    while (in >> r.what >> r.worker >> r.pid) out.push_back(r);
    return out;
  }

  [[nodiscard]] int read_fd() const noexcept { return fds_[0]; }

  /// For a reader in another process: without its own copy of the write end, it sees the end of
  /// the pipe once every writer is gone, rather than waiting forever.
  void close_write_end() {
    ::close(fds_[1]);
    fds_[1] = -1;
  }

private:
  int fds_[2] = {-1, -1};
};

std::vector<record> only(const std::vector<record>& records, const std::string& what) {
  std::vector<record> out;
  std::copy_if(records.begin(), records.end(), std::back_inserter(out),
               [&](const record& r) { return r.what == what; });
  return out;
}

std::set<pid_t> pids_of(const std::vector<record>& records) {
  std::set<pid_t> out;
  for (const auto& r : records) out.insert(r.pid);
  return out;
}

std::set<long> workers_of(const std::vector<record>& records) {
  std::set<long> out;
  for (const auto& r : records) out.insert(r.worker);
  return out;
}

/// Every worker of the run ended, was reaped by run() (so none is a zombie now), and the pids it
/// reports are those that wrote `records`.
void check_reaped(const taskyard::run_result& result, std::size_t workers,
                  const std::vector<record>& records) {
  REQUIRE(result.workers.size() == workers);
  std::set<pid_t> pids;
  for (std::size_t i = 0; i < workers; ++i) {
    CHECK(result.workers[i].index == i);
    pids.insert(result.workers[i].pid);
    const pid_t reaped = ::waitpid(result.workers[i].pid, nullptr, WNOHANG);
    const int error = errno;
    CHECK(reaped == -1);
    CHECK(error == ECHILD); // not a child any more: no zombie left
  }
  CHECK(pids == pids_of(records));
}

/// A process forked before run() that waits until `count` workers have written "started" to
/// `ready`, then acts: `act(pids by worker index)` returns true if it did what it had to.
class watcher {
public:
  watcher(journal& ready, int count, const std::function<bool(std::map<long, pid_t>&)>& act) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ != 0) return;
    ready.close_write_end(); // if a worker dies before it has started, the watcher fails, not hangs
    std::map<long, pid_t> started;
    std::string text;
    char c = 0;
    while (static_cast<int>(started.size()) < count && ::read(ready.read_fd(), &c, 1) == 1) {
      if (c != '\n') {
        text += c;
        continue;
      }
      std::istringstream in(text);
      record r;
      if (in >> r.what >> r.worker >> r.pid) started[r.worker] = r.pid;
      text.clear();
    }
    ::_exit(static_cast<int>(started.size()) == count && act(started) ? 0 : 1);
  }
  watcher(const watcher&) = delete;
  watcher& operator=(const watcher&) = delete;

  /// Reaps the watcher; true if it did its part.
  bool succeeded() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

private:
  pid_t pid_ = 0;
};

/// Each worker logs its lifecycle to `log`, and runs a task that writes "started" to `ready`, then
/// waits until it is cancelled, and logs its cleanup.
void log_lifecycle(App& app, journal& log, journal& ready) {
  app.before_server_start([&](App& a) { log.write("before_server_start", a); });
  app.add_task([&](App& a) -> asio::awaitable<void> {
    ready.write("started", a);
    try {
      co_await test::suspend_forever();
    } catch (const boost::system::system_error&) {
      log.write("task_cleanup", a);
      throw;
    }
  });
  app.before_server_stop([&](App& a) { log.write("before_server_stop", a); });
  app.after_server_stop([&](App& a) { log.write("after_server_stop", a); });
  app.main_process_stop([&](App& a) { log.write("main_process_stop", a); });
}

/// Every worker in `workers` ran its whole stop sequence, in order, and the main process's
/// main_process_stop came after all of them.
void check_stopped_in_order(const std::vector<record>& records, const std::set<long>& workers) {
  for (long w : workers) {
    INFO("worker " << w);
    std::vector<std::string> seen;
    for (const auto& r : records)
      if (r.worker == w) seen.push_back(r.what);
    const std::vector<std::string> expected = {"before_server_start", "before_server_stop",
                                               "task_cleanup", "after_server_stop"};
    CHECK(seen == expected);
  }
  REQUIRE_FALSE(records.empty());
  CHECK(records.back().what == "main_process_stop");
  CHECK(records.back().pid == ::getpid());
}

} // namespace

TEST_CASE("a callable added before run is invoked once in each worker, not once per callable and "
          "worker pair") {
  const std::size_t threads = GENERATE(1, 2);
  const int added = GENERATE(1, 2);
  INFO("threads per worker: " << threads << ", callable added " << added << " time(s)");
  journal log;
  std::atomic<int> ran{0}; // in each worker, its own copy
  App app("workers");
  for (int i = 0; i < added; ++i) {
    app.add_task([&](App& a) -> asio::awaitable<void> {
      log.write("slow_work", a);
      if (ran.fetch_add(1) + 1 == added) a.stop(); // this worker only
      co_return;
    });
  }
  const auto result = app.run({.workers = 3, .threads = threads});
  const auto records = log.read_all();

  const auto runs = only(records, "slow_work");
  CHECK(runs.size() == static_cast<std::size_t>(3 * added));
  CHECK(pids_of(runs).size() == 3);
  CHECK(workers_of(runs) == std::set<long>{0, 1, 2});
  for (pid_t pid : pids_of(runs)) {
    CHECK(std::count_if(runs.begin(), runs.end(), [&](const record& r) { return r.pid == pid; }) ==
          added);
  }
  CHECK(result.clean());
  CHECK(result.exit_code() == EXIT_SUCCESS);
  check_reaped(result, 3, records);
  CHECK(ran.load() == 0); // the main process invoked none of them
}

TEST_CASE("a task added in main_process_start runs once, in the main process, before any worker "
          "starts") {
  const std::size_t threads = GENERATE(1, 2);
  INFO("threads per worker: " << threads);
  journal log;
  App app("workers");
  app.main_process_start([&](App& a) {
    a.add_task(
        [&](App& self) -> asio::awaitable<void> {
          for (int i = 0; i < 3; ++i) co_await test::yield(); // awaited, not merely started
          log.write("main_task", self);
        },
        "main-only");
  });
  app.add_task([]() -> asio::awaitable<void> { co_return; }, "per-worker");
  app.before_server_start([&](App& a) {
    log.write("before_server_start", a);
    if (!a.find_task("main-only")) log.write("no_main_task_here", a);
    if (a.find_task("per-worker")) log.write("own_named_task", a);
  });
  app.after_server_start([](App& a) { a.stop(); });
  const auto result = app.run({.workers = 3, .threads = threads});
  const auto records = log.read_all();

  REQUIRE_FALSE(records.empty());
  CHECK(records.front().what == "main_task");
  CHECK(records.front().pid == ::getpid());
  CHECK(records.front().worker == -1);
  CHECK(only(records, "main_task").size() == 1);
  CHECK(workers_of(only(records, "before_server_start")) == std::set<long>{0, 1, 2});
  CHECK(only(records, "no_main_task_here").size() == 3);
  CHECK(only(records, "own_named_task").size() == 3);
  CHECK(result.clean());
  check_reaped(result, 3, only(records, "before_server_start"));

  // The main process's registry holds its own task, not the workers'.
  const auto main_task = app.find_task("main-only");
  REQUIRE(main_task);
  CHECK(main_task->done());
  CHECK_FALSE(app.find_task("per-worker"));
  CHECK_FALSE(app.worker_index());
}

TEST_CASE("SIGTERM to the main process, or Ctrl-C, stops every worker through its full stop "
          "sequence") {
  const std::size_t threads = GENERATE(1, 2);
  // Ctrl-C in a terminal sends SIGINT to the whole process group: the main process (which
  // forwards it as SIGTERM) and each worker.
  const bool ctrl_c = GENERATE(false, true);
  INFO("threads per worker: " << threads
                              << (ctrl_c ? ", Ctrl-C" : ", SIGTERM to the main process"));
  journal log;
  journal ready;
  App app("workers");
  log_lifecycle(app, log, ready);
  const pid_t main_pid = ::getpid();
  watcher signaller(ready, 3, [main_pid, ctrl_c](auto& workers) {
    if (!ctrl_c) return ::kill(main_pid, SIGTERM) == 0;
    // The main process first (it returns from run() only once every worker is gone, so it is
    // there); a worker may be gone by the time it is reached, stopped by the forwarded SIGTERM.
    bool sent = ::kill(main_pid, SIGINT) == 0;
    for (const auto& [index, pid] : workers)
      sent = (::kill(pid, SIGINT) == 0 || errno == ESRCH) && sent;
    return sent;
  });
  const auto result = app.run({.workers = 3, .threads = threads});
  CHECK(signaller.succeeded());
  const auto records = log.read_all();

  check_stopped_in_order(records, {0, 1, 2});
  CHECK(result.clean());
  check_reaped(result, 3, only(records, "after_server_stop"));
}

TEST_CASE("a worker killed with SIGKILL is reported with its index, and the others stop in order") {
  const std::size_t threads = GENERATE(1, 2);
  INFO("threads per worker: " << threads);
  journal log;
  journal ready;
  App app("workers");
  log_lifecycle(app, log, ready);
  watcher killer(ready, 3, [](auto& pids) { return ::kill(pids[1], SIGKILL) == 0; });
  std::ostringstream errors;
  auto* const previous = std::cerr.rdbuf(errors.rdbuf());
  const auto result = app.run({.workers = 3, .threads = threads});
  std::cerr.rdbuf(previous);
  CHECK(killer.succeeded());
  const auto records = log.read_all();

  REQUIRE(result.workers.size() == 3);
  CHECK_FALSE(result.clean());
  CHECK(result.exit_code() == EXIT_FAILURE);
  CHECK(result.workers[1].signal() == SIGKILL);
  CHECK_FALSE(result.workers[1].clean());
  CHECK(result.workers[0].clean());
  CHECK(result.workers[2].clean());
  const std::string report = errors.str();
  INFO(report);
  CHECK(report.find("worker 1 (pid " + std::to_string(result.workers[1].pid) +
                    ") was killed by signal 9") != std::string::npos);
  CHECK(report.find("stopping the other workers") != std::string::npos);

  // Worker 1 died at once; 0 and 2 ran their whole stop sequence.
  check_stopped_in_order(records, {0, 2});
  CHECK(workers_of(only(records, "after_server_stop")) == std::set<long>{0, 2});
  check_reaped(result, 3, only(records, "before_server_start"));
}

TEST_CASE("stop_all in one worker stops every worker") {
  const std::size_t threads = GENERATE(1, 2);
  INFO("threads per worker: " << threads);
  journal log;
  journal ready;
  journal go; // the watcher writes to it once all have started; worker 0 reads it
  App app("workers");
  log_lifecycle(app, log, ready);
  app.add_task([&](App& a) -> asio::awaitable<void> {
    if (a.worker_index() != 0u) co_return;
    asio::posix::stream_descriptor in(co_await asio::this_coro::executor, ::dup(go.read_fd()));
    char byte = 0;
    co_await asio::async_read(in, asio::buffer(&byte, 1), asio::use_awaitable);
    a.stop_all();
  });
  watcher starter(ready, 3, [&go](auto&) {
    go.write_line("go");
    return true;
  });
  const auto result = app.run({.workers = 3, .threads = threads});
  CHECK(starter.succeeded());
  const auto records = log.read_all();

  check_stopped_in_order(records, {0, 1, 2});
  CHECK(result.clean());
  check_reaped(result, 3, only(records, "after_server_stop"));
}

TEST_CASE("a worker whose listener throws exits with status 1, and the others are stopped") {
  journal log;
  journal ready;
  App app("workers");
  app.before_server_start([](App& a) {
    if (a.worker_index() == 1u) throw std::runtime_error("worker 1 cannot start");
  });
  log_lifecycle(app, log, ready);
  std::ostringstream errors;
  auto* const previous = std::cerr.rdbuf(errors.rdbuf());
  const auto result = app.run({.workers = 3});
  std::cerr.rdbuf(previous);
  const auto records = log.read_all();

  REQUIRE(result.workers.size() == 3);
  CHECK(result.workers[1].exit_status() == 1);
  CHECK_FALSE(result.clean());
  CHECK(errors.str().find("worker 1 (pid " + std::to_string(result.workers[1].pid) +
                          ") exited with status 1") != std::string::npos);
  // Worker 1's start ended at the throw, and its stop sequence ran.
  const auto stops = only(records, "after_server_stop");
  CHECK(workers_of(stops) == std::set<long>{0, 1, 2});
  CHECK(only(records, "main_process_stop").size() == 1);
}

TEST_CASE("no worker is forked when main_process_start throws, stops the App, or is interrupted by "
          "SIGTERM") {
  const std::string how = GENERATE("throws", "stop()", "SIGTERM");
  INFO("main_process_start " << how);
  journal log;
  App app("workers");
  app.main_process_start([&](App&) {
    if (how == "throws") throw std::runtime_error("no database");
  });
  // A main-process task that never finishes on its own: the stop ends the wait for it, and the
  // main process's shutdown cancels it.
  app.main_process_start([&](App& a) {
    a.add_task([&](App& self) -> asio::awaitable<void> {
      if (how == "stop()") self.stop();
      if (how == "SIGTERM") ::kill(::getpid(), SIGTERM);
      try {
        co_await test::suspend_forever();
      } catch (const boost::system::system_error&) {
        log.write("main_task_cleanup", self);
        throw;
      }
    });
  });
  app.before_server_start([&](App& a) { log.write("before_server_start", a); });
  app.main_process_stop([&](App& a) { log.write("main_process_stop", a); });
  if (how == "throws") {
    CHECK_THROWS_WITH(app.run({.workers = 3}), "no database");
  } else {
    CHECK(app.run({.workers = 3}).workers.empty());
  }
  const auto records = log.read_all();
  std::vector<std::string> seen;
  for (const auto& r : records) {
    CHECK(r.pid == ::getpid());
    seen.push_back(r.what);
  }
  // A throwing listener ends the start before the second listener adds its task.
  const std::vector<std::string> expected =
      how == "throws" ? std::vector<std::string>{"main_process_stop"}
                      : std::vector<std::string>{"main_task_cleanup", "main_process_stop"};
  CHECK(seen == expected);
}

TEST_CASE("the main process refuses to fork while it runs other threads") {
  journal log;
  App app("workers");
  app.before_server_start([&](App& a) { log.write("before_server_start", a); });
  app.main_process_stop([&](App& a) { log.write("main_process_stop", a); });
  std::promise<void> release;
  // (2 threads, or 3 under TSan, whose runtime starts a thread of its own with the first one.)
  std::thread other([done = release.get_future()]() mutable { done.wait(); });
  CHECK_THROWS_WITH(app.run({.workers = 2}),
                    Catch::Contains("cannot fork its workers: the main process runs") &&
                        Catch::Contains("start threads in before_server_start"));
  release.set_value();
  other.join();
  const auto records = log.read_all();
  REQUIRE(records.size() == 1); // no worker started; the main process stopped
  CHECK(records[0].what == "main_process_stop");
}

TEST_CASE("a resolver used in main_process_start does not keep the workers from forking") {
  // Asio resolves on a thread of its own, which notify_fork(fork_prepare) ends: threads are
  // counted after it.
  journal log;
  App app("workers");
  app.main_process_start([&](App& a) {
    a.add_task([&](App& self) -> asio::awaitable<void> {
      asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
      const auto found = co_await resolver.async_resolve("127.0.0.1", "80", asio::use_awaitable);
      if (!found.empty()) log.write("resolved", self);
    });
  });
  app.before_server_start([&](App& a) {
    log.write("before_server_start", a);
    a.stop();
  });
#if defined(TASKYARD_TEST_TSAN)
  // ThreadSanitizer's runtime starts a thread of its own along with the resolver's, and keeps it:
  // the documented refusal.
  CHECK_THROWS_WITH(app.run({.workers = 2}), Catch::Contains("cannot fork its workers"));
  const auto records = log.read_all();
  REQUIRE(records.size() == 1);
  CHECK(records.front().what == "resolved");
#else
  const auto result = app.run({.workers = 2});
  const auto records = log.read_all();
  REQUIRE_FALSE(records.empty());
  CHECK(records.front().what == "resolved");
  CHECK(workers_of(only(records, "before_server_start")) == std::set<long>{0, 1});
  CHECK(result.clean());
#endif
}

TEST_CASE("run rejects workers = 0, and workers without signal handling") {
  App app("workers");
  CHECK_THROWS_AS(app.run({.workers = 0}), taskyard::invalid_run_options);
  CHECK_THROWS_AS(app.run({.workers = 2, .handle_signals = false}), taskyard::invalid_run_options);
  // Nothing started: the App can still run.
  app.after_server_start([](App& a) { a.stop(); });
  const auto result = app.run({.handle_signals = false});
  CHECK(result.clean());
  CHECK(result.workers.empty());
  CHECK(app.worker_index() == 0u);
}
