//
// taskyard/errors.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// The exceptions taskyard throws. Every one derives from taskyard::error, itself a
// std::runtime_error, and carries a message that names the task (or App) involved and says what to
// do about it.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_ERRORS_HPP
#define TASKYARD_ERRORS_HPP

#include <stdexcept>
#include <string>
#include <string_view>

namespace taskyard {

/// Base class of every exception thrown by taskyard.
class error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Thrown by App::get_task and App::cancel_task when no task is registered under the name.
///
/// App::find_task, and App::cancel_task with missing_task::ignore, are the non-throwing forms.
class task_not_found : public error {
public:
  explicit task_not_found(std::string_view name)
      : error("taskyard: no task named '" + std::string(name) +
              "' is registered (it was never added, or it was purged; use find_task to look up "
              "a task that may be absent)"),
        name_(name) {}

  /// The name that was looked up.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
  std::string name_;
};

/// Thrown by App::add_task when a task that has not finished is already registered under the name.
///
/// Sanic silently orphans the older task in this case; taskyard refuses. Pass
/// name_conflict::replace to cancel the older task and register the new one instead.
class duplicate_task_name : public error {
public:
  explicit duplicate_task_name(std::string_view name)
      : error("taskyard: a task named '" + std::string(name) +
              "' is still running; cancel it first, pick another name, or pass "
              "taskyard::name_conflict::replace"),
        name_(name) {}

  /// The name that was already taken.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
  std::string name_;
};

/// Thrown when a name given to add_task, get_task, find_task or cancel_task is empty.
///
/// A task without a name is added with the overload of add_task that takes no name.
class invalid_task_name : public error {
public:
  invalid_task_name()
      : error("taskyard: a task name must not be empty (to add an unnamed task, call add_task "
              "without a name)") {}
};

/// Thrown by App::add_task once the App has begun to stop (after App::stop or a signal) or has
/// been stopped: no task may be added to an App that will not run it.
class app_stopped : public error {
public:
  explicit app_stopped(std::string_view app_name)
      : error("taskyard: app '" + std::string(app_name) +
              "' is stopping or has stopped and accepts no new task; add tasks before or while "
              "it runs") {}
};

/// Thrown by App::run when it is called while the App is already running or has already run.
class app_running : public error {
public:
  explicit app_running(std::string_view app_name)
      : error("taskyard: app '" + std::string(app_name) +
              "' has already been run; an App runs its lifecycle once") {}
};

/// Thrown by App::get_task<T> when the task registered under the name produces another type.
class task_type_mismatch : public error {
public:
  explicit task_type_mismatch(std::string_view name)
      : error("taskyard: the task named '" + std::string(name) +
              "' does not produce the requested result type; ask for Task<> (any result) or "
              "the type its coroutine returns"),
        name_(name) {}

  /// The name that was looked up.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
  std::string name_;
};

/// Thrown by Task::result when the task has not finished yet; co_await Task::wait() instead.
class task_not_finished : public error {
public:
  explicit task_not_finished(std::string_view name)
      : error("taskyard: task '" + std::string(name.empty() ? "<unnamed>" : name) +
              "' has not finished; co_await task.wait() to wait for its result") {}
};

/// App::run was given options it cannot run with.
class invalid_run_options : public error {
public:
  explicit invalid_run_options(std::string_view what)
      : error("taskyard: invalid run_options: " + std::string(what)) {}
};

} // namespace taskyard

#endif // TASKYARD_ERRORS_HPP
