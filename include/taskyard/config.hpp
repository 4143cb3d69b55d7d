//
// taskyard/config.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// taskyard::config: the settings of an App (Sanic's app.config, for what concerns tasks).
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_CONFIG_HPP
#define TASKYARD_CONFIG_HPP

#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>

namespace taskyard {

/// Called with the name of a task (empty for an unnamed one) and the exception it failed with, when
/// nobody observed that exception by the time the task was purged or its last handle dropped.
using unobserved_exception_handler =
    std::function<void(std::string_view task_name, std::exception_ptr)>;

/// The default exception handler: one line on stderr naming the task and the exception.
inline void print_unobserved_exception(std::string_view task_name, std::exception_ptr e) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) { // NOLINT(bugprone-empty-catch): the type is all we could learn
  }
  std::string name = "<unnamed>";
  if (!task_name.empty()) { // not "'" + name + "'": g++ 12 -O2 misreports it (-Wrestrict)
    name.assign(1, '\'');
    name.append(task_name);
    name += '\'';
  }
  std::cerr << "taskyard: task " << name << " failed and nobody observed it: " << what << '\n';
}

/// The settings of an App. Set them before App::run (or before the first add_task); they are read
/// without synchronisation while the App runs.
struct config {
  /// How long shutdown_tasks waits, during App::run's stop sequence, for cancelled tasks to finish
  /// before it gives up on them (Sanic's GRACEFUL_SHUTDOWN_TIMEOUT).
  std::chrono::steady_clock::duration graceful_shutdown_timeout = std::chrono::seconds(15);

  /// How long shutdown_tasks waits, after giving up on tasks, for their frames to be destroyed.
  /// Frames suspended on an operation that supports cancellation go within microseconds; the others
  /// go when that operation completes or the io_context is destroyed.
  std::chrono::steady_clock::duration forced_frame_grace = std::chrono::milliseconds(100);

  /// Remove each named task from the registry as soon as it finishes, instead of keeping it until
  /// purge_tasks (for servers that name a task per connection).
  bool auto_purge = false;

  /// Receives failures nobody observed. If it throws, the exception is printed and dropped.
  unobserved_exception_handler exception_handler = print_unobserved_exception;
};

} // namespace taskyard

#endif // TASKYARD_CONFIG_HPP
