//
// taskyard/detail/worker_processes.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The POSIX side of App::run with workers > 1: counting the process's threads before a fork,
// forking with io_context::notify_fork around it, and the main process's supervision loop, which
// forwards SIGINT/SIGTERM to the workers, reaps them and stops the rest when one dies.
//
// The main process blocks SIGINT, SIGTERM and SIGCHLD before the first fork and takes them with
// sigwaitinfo, so no signal handler runs in it and no signal between two forks is lost. Each
// worker installs its own handlers (an asio::signal_set) first, then restores the signal mask and
// SIGCHLD's disposition it inherited: a stop signal already pending reaches its handler.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_WORKER_PROCESSES_HPP
#define TASKYARD_DETAIL_WORKER_PROCESSES_HPP

#include <taskyard/errors.hpp>
#include <taskyard/run.hpp>

#include <boost/asio/execution_context.hpp>
#include <boost/system/system_error.hpp>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <dirent.h>
#include <pthread.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace taskyard::detail {

/// The number of threads the process runs now, from /proc/self/task; nothing where /proc is not
/// mounted.
inline std::optional<std::size_t> process_thread_count() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return std::nullopt;
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir))
    if (entry->d_name[0] != '.') ++count;
  ::closedir(dir);
  return count;
}

inline boost::system::system_error posix_error(const char* what) {
  return {boost::system::error_code(errno, boost::system::system_category()), what};
}

/// For the main process while it has workers: SIGINT, SIGTERM and SIGCHLD blocked (taken by
/// wait_signal), SIGCHLD at its default disposition (so that exited workers stay waitable even if
/// the program ignores SIGCHLD). The destructor restores both; a forked worker calls
/// restore() instead.
class supervisor_signals {
public:
  supervisor_signals() {
    ::sigemptyset(&set_);
    ::sigaddset(&set_, SIGINT);
    ::sigaddset(&set_, SIGTERM);
    ::sigaddset(&set_, SIGCHLD);
    if (const int e = ::pthread_sigmask(SIG_BLOCK, &set_, &previous_mask_); e != 0) {
      errno = e;
      throw posix_error("taskyard: pthread_sigmask");
    }
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL; // NOLINT(cppcoreguidelines-pro-type-union-access)
    ::sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGCHLD, &dfl, &previous_chld_);
  }

  supervisor_signals(const supervisor_signals&) = delete;
  supervisor_signals& operator=(const supervisor_signals&) = delete;

  ~supervisor_signals() {
    // A SIGINT or SIGTERM still pending was meant for the workers, which are gone: taken here, so
    // that unblocking it does not kill the main process.
    take_stop_signal();
    restore();
  }

  void restore() noexcept {
    ::sigaction(SIGCHLD, &previous_chld_, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
  }

  /// Takes a pending SIGINT or SIGTERM, if there is one; true if there was.
  bool take_stop_signal() const noexcept {
    sigset_t stop_set;
    ::sigemptyset(&stop_set);
    ::sigaddset(&stop_set, SIGINT);
    ::sigaddset(&stop_set, SIGTERM);
    const timespec now = {0, 0};
    bool taken = false;
    while (::sigtimedwait(&stop_set, nullptr, &now) > 0) taken = true;
    return taken;
  }

  /// Waits for one of the three signals and returns it (EINTR is retried).
  int wait_signal() const {
    for (;;) {
      const int sig = ::sigwaitinfo(&set_, nullptr);
      if (sig > 0) return sig;
      if (errno != EINTR) throw posix_error("taskyard: sigwaitinfo");
    }
  }

private:
  sigset_t set_{};
  sigset_t previous_mask_{};
  struct sigaction previous_chld_ = {};
};

/// Flushes every C and C++ output stream: what is buffered when a process forks would otherwise be
/// written once by each process.
inline void flush_output() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) { // NOLINT(bugprone-empty-catch): a stream that cannot be flushed is not ours
  }
  std::fflush(nullptr);
}

/// Forks once, with notify_fork around the fork, once it has checked that the calling thread is
/// the only one (counted after fork_prepare, which ends the io_context's internal threads, such as
/// the resolver's; where /proc is not mounted the count is unknown and the fork goes ahead).
/// Returns the child's pid in the parent and 0 in the child. Throws taskyard::error if other
/// threads run, system_error if the fork fails. A child whose notify_fork throws exits at once
/// with status 1 (it must not go on in the parent's code); if the parent's throws, the child is
/// killed and reaped before the exception leaves.
inline pid_t fork_process(boost::asio::execution_context& context, const std::string& app_name) {
  using boost::asio::execution_context;
  flush_output();
  context.notify_fork(execution_context::fork_prepare);
  if (const auto threads = process_thread_count(); threads && *threads > 1) {
    context.notify_fork(execution_context::fork_parent);
    throw taskyard::error(
        "taskyard: app '" + app_name + "' cannot fork its workers: the main process runs " +
        std::to_string(*threads) +
        " threads, and a fork copies only the calling one; start threads in "
        "before_server_start (in each worker), not before run() or in main_process_start");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    context.notify_fork(execution_context::fork_parent);
    errno = e;
    throw posix_error("taskyard: fork");
  }
  if (pid == 0) {
    try {
      context.notify_fork(execution_context::fork_child);
    } catch (const std::exception& e) {
      std::cerr << "taskyard: app '" << app_name << "': a worker could not start: " << e.what()
                << '\n';
      flush_output();
      ::_exit(EXIT_FAILURE);
    } catch (...) {
      ::_exit(EXIT_FAILURE);
    }
    return 0;
  }
  try {
    context.notify_fork(execution_context::fork_parent);
  } catch (...) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    throw;
  }
  return pid;
}

/// Blocks SIGINT and SIGTERM in the calling thread when it goes. A worker declares one after its
/// signal_set, so that a stop signal that comes once the lifecycle is over (Ctrl-C reaches the
/// whole process group, and the main process forwards it too) finds them blocked rather than at
/// their default action, which would kill the worker on its way out.
class block_stop_signals_on_exit {
public:
  block_stop_signals_on_exit() = default;
  block_stop_signals_on_exit(const block_stop_signals_on_exit&) = delete;
  block_stop_signals_on_exit& operator=(const block_stop_signals_on_exit&) = delete;
  ~block_stop_signals_on_exit() {
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, SIGINT);
    ::sigaddset(&set, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
};

/// In a new worker: asks for SIGTERM if the main process dies (Linux), and says whether the main
/// process is still there.
inline bool watch_main_process(pid_t main_pid) noexcept {
#ifdef __linux__
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  return ::getppid() == main_pid;
}

/// The main process's watch over its workers: waits until every one has exited, forwarding
/// SIGINT/SIGTERM to them as SIGTERM. When one ends abnormally (killed by a signal, or a non-zero
/// exit status) while no stop was asked for, it reports it on stderr and stops the others with
/// SIGTERM (an orderly stop: no restart).
class worker_supervisor {
public:
  worker_supervisor(std::string app_name, const supervisor_signals& signals, std::size_t workers)
      : app_name_(std::move(app_name)), signals_(signals) {
    workers_.reserve(workers); // so that add() cannot throw once a worker is forked
    running_.reserve(workers);
  }

  worker_supervisor(const worker_supervisor&) = delete;
  worker_supervisor& operator=(const worker_supervisor&) = delete;

  /// Leaves no worker behind, even when an exception leaves run() early: those still running are
  /// stopped and reaped.
  ~worker_supervisor() {
    if (running_count() == 0) return;
    stop_all();
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (running_[i])
        while (::waitpid(workers_[i].pid, nullptr, 0) < 0 && errno == EINTR) {}
  }

  /// Adds a forked worker (within the count given at construction).
  void add(std::size_t index, pid_t pid) noexcept {
    workers_.push_back({index, pid, 0});
    running_.push_back(true);
  }

  /// Stops every worker still running (SIGTERM).
  void stop_all() {
    stopping_ = true;
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (running_[i]) ::kill(workers_[i].pid, SIGTERM);
  }

  /// Waits until every worker has exited and been reaped; returns how each ended.
  std::vector<worker_exit> wait_all() {
    reap();
    while (running_count() > 0) {
      if (signals_.wait_signal() == SIGCHLD)
        reap();
      else
        stop_all();
    }
    return workers_;
  }

private:
  void reap() {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!running_[i]) continue;
      int status = 0;
      pid_t r = 0;
      do {
        r = ::waitpid(workers_[i].pid, &status, WNOHANG);
      } while (r < 0 && errno == EINTR);
      if (r == 0) continue;
      running_[i] = false;
      // r < 0 (ECHILD: reaped by someone else) leaves the status unknown: reported as failed.
      workers_[i].wait_status = r > 0 ? status : (EXIT_FAILURE << 8);
      if (workers_[i].clean()) continue;
      std::cerr << "taskyard: app '" << app_name_ << "': worker " << workers_[i].index << " (pid "
                << workers_[i].pid << ") " << workers_[i].describe();
      if (!stopping_ && running_count() > 0) std::cerr << "; stopping the other workers";
      std::cerr << '\n';
      if (!stopping_) stop_all();
    }
  }

  [[nodiscard]] std::size_t running_count() const noexcept {
    std::size_t n = 0;
    for (bool r : running_) n += r ? 1 : 0;
    return n;
  }

  std::string app_name_;
  const supervisor_signals& signals_;
  std::vector<worker_exit> workers_;
  std::vector<bool> running_;
  bool stopping_ = false;
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_WORKER_PROCESSES_HPP
