//
// taskyard/run.hpp
// ~~~~~~~~~~~~~~~~
//
// How App::run runs (run_options: worker processes, threads per worker, signals) and what it
// reports when it returns (run_result: how each worker process ended).
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_RUN_HPP
#define TASKYARD_RUN_HPP

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>

namespace taskyard {

/// How App::run runs: Sanic's `app.run(workers=N)`, plus threads per worker.
struct run_options {
  /// Worker processes. 1 runs the whole lifecycle in the calling process. N > 1 runs the
  /// main_process_start listeners (and the tasks they add) to completion in the calling process,
  /// then forks N workers, each running its own lifecycle with its own registry, and supervises
  /// them (see App::run). Must not be 0.
  std::size_t workers = 1;
  /// Threads that run each worker's io_context (each calls io_context::run), the caller's among
  /// them. 0 counts as 1.
  std::size_t threads = 1;
  /// Stop on SIGINT and SIGTERM, as a server does. With workers > 1 it must stay true: the main
  /// process stops its workers with SIGTERM.
  bool handle_signals = true;
};

/// How one worker process ended.
struct worker_exit {
  /// The worker's index, 0 to workers - 1 (App::worker_index() in that worker).
  std::size_t index = 0;
  /// Its process id.
  pid_t pid = 0;
  /// Its status as waitpid(2) reported it.
  int wait_status = 0;

  /// True if it exited with status 0: its lifecycle ran to the end and no listener threw.
  [[nodiscard]] bool clean() const noexcept {
    return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
  }

  /// The signal that killed it, or 0 if it exited.
  [[nodiscard]] int signal() const noexcept {
    return WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
  }

  /// Its exit status, or -1 if a signal killed it.
  [[nodiscard]] int exit_status() const noexcept {
    return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  }

  /// "exited with status 0", "exited with status 1", "was killed by signal 9 (Killed)".
  [[nodiscard]] std::string describe() const {
    if (const int sig = signal(); sig != 0) {
      const char* what = ::strsignal(sig);
      return "was killed by signal " + std::to_string(sig) + " (" +
             std::string(what != nullptr ? what : "unknown") + ")";
    }
    return "exited with status " + std::to_string(exit_status());
  }
};

/// What App::run reports when it returns.
struct run_result {
  /// How each worker process ended, by index; empty for a single-process run.
  std::vector<worker_exit> workers;

  /// True if every worker stopped cleanly (always true for a single-process run, which reports a
  /// failed listener by throwing instead).
  [[nodiscard]] bool clean() const noexcept {
    for (const auto& w : workers)
      if (!w.clean()) return false;
    return true;
  }

  /// EXIT_SUCCESS if clean(), EXIT_FAILURE otherwise: `return app.run({...}).exit_code();`.
  [[nodiscard]] int exit_code() const noexcept { return clean() ? EXIT_SUCCESS : EXIT_FAILURE; }
};

} // namespace taskyard

#endif // TASKYARD_RUN_HPP
