//
// taskyard/task.hpp
// ~~~~~~~~~~~~~~~~~
//
// Task<T>: the handle to a background task, what App::add_task returns and App::get_task finds.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_TASK_HPP
#define TASKYARD_TASK_HPP

#include <taskyard/detail/task_state.hpp>
#include <taskyard/errors.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace taskyard {

class registry;
namespace detail {
class app_core;
} // namespace detail

/// A handle to a task that an App runs: Sanic's (and asyncio's) Task.
///
/// A handle is a small shared reference to the task's state: copies refer to the same task, and a
/// handle may outlive the task and the App (it then keeps reporting the final state). Holding a
/// handle never keeps the task's coroutine alive: the App owns that.
///
/// `Task<T>` produces a T; `Task<>` (that is, `Task<void>`) is any task seen without its result:
/// every `Task<T>` converts to it, and it is what App::get_task and App::tasks() return.
///
/// A task is *done* once it has finished, whichever way: succeeded, failed (threw) or cancelled.
/// It is *cancelled* if it ended by letting `operation_aborted` propagate, or if it returned after
/// its cancellation was requested.
///
/// Thread safety: every member may be called from any thread, concurrently with the task running.
template <typename T = void>
class Task {
public:
  using result_type = T;

  /// An empty handle, referring to no task.
  Task() noexcept = default;

  /// Views a task of any result type as a Task<> (only to Task<void>).
  template <typename U>
  requires(std::is_void_v<T> && !std::is_void_v<U>) Task(const Task<U>& other)
  noexcept // NOLINT(google-explicit-constructor)
      : state_(other.state_) {}

  /// True if the handle refers to a task.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  /// The name the task was added under; empty for an unnamed task.
  [[nodiscard]] const std::string& name() const noexcept { return state_->name(); }

  /// True once the task has finished: succeeded, failed or cancelled.
  [[nodiscard]] bool done() const { return state_->finished(); }

  /// True if the task finished by cancellation.
  [[nodiscard]] bool cancelled() const {
    return state_->status() == detail::task_status::cancelled;
  }

  /// True if the task finished by throwing an exception other than operation_aborted.
  [[nodiscard]] bool failed() const { return state_->status() == detail::task_status::failed; }

  /// True if the App gave up on the task at shutdown because it ignored cancellation past the
  /// timeout; its frames were destroyed without it resuming.
  [[nodiscard]] bool forced() const { return state_->forced(); }

  /// Requests cancellation, with an optional message kept on the handle (cancel_message()).
  ///
  /// Terminal cancellation is emitted on the task's strand: the operation the task is suspended on
  /// completes with `asio::error::operation_aborted`, which the task sees as a
  /// `boost::system::system_error` (and so does every later `co_await` until it resets its
  /// cancellation state with `asio::this_coro::reset_cancellation_state()`). A task that has not
  /// started yet is cancelled at once. Returns false, and does nothing, if the task has already
  /// finished. Does not wait: co_await wait(), or use App::cancel_task, to wait for the task to
  /// end.
  bool cancel(std::string message = {}) const { return state_->request_cancel(std::move(message)); }

  /// The message given to the last cancel() or App::cancel_task; empty if none was.
  [[nodiscard]] std::string cancel_message() const { return state_->cancel_message(); }

  /// Waits for the task to finish and returns its result (by copy), or rethrows its exception, or
  /// throws `boost::system::system_error(operation_aborted)` if it was cancelled.
  ///
  /// Any number of coroutines may wait, on any executor, from any thread. Cancelling the waiting
  /// coroutine abandons the wait (it sees operation_aborted) without affecting the task.
  ///
  /// The task's only waiter, if the thread that ends the task may run its executor
  /// (asio::dispatch's rule), resumes there and then, as the task's coroutine ends, as a coroutine
  /// awaiting `co_spawn(..., use_awaitable)` does (the task's own frames are gone by then); several
  /// waiters, or one on another thread, are resumed through their executors. A chain of tasks each
  /// waiting for the one before resumes in place only so deep (8), and the rest on later turns of
  /// the io_context, so that it never grows the stack without bound. A task cancelled before it
  /// started, or given up on, wakes its waiters through their executors.
  [[nodiscard]] boost::asio::awaitable<T> wait() const { return wait_for(state_); }

  /// The result of a finished task; rethrows its exception, or throws operation_aborted if it was
  /// cancelled, or task_not_finished if it is still running.
  [[nodiscard]] decltype(auto) result() const {
    if constexpr (std::is_void_v<T>) {
      // Any task can be seen as a Task<>: only its outcome matters then, not its value.
      state_->rethrow_outcome();
    } else {
      return static_cast<const detail::task_state<T>&>(*state_).value();
    }
  }

  /// The exception a finished task failed with; null if it succeeded or was cancelled. Throws
  /// task_not_finished if the task is still running. Marks the exception observed, so it is not
  /// reported to the App's exception handler.
  [[nodiscard]] std::exception_ptr exception() const {
    if (!state_->finished()) throw task_not_finished(state_->name());
    return state_->take_failure();
  }

  /// True if both handles refer to the same task (a Task<T> compares with a Task<> by converting).
  friend bool operator==(const Task& a, const Task& b) noexcept { return a.state_ == b.state_; }

private:
  template <typename>
  friend class Task;
  friend class App;
  friend class registry;
  friend class detail::app_core;

  explicit Task(std::shared_ptr<detail::task_state_base> state) noexcept
      : state_(std::move(state)) {}

  static boost::asio::awaitable<T> wait_for(std::shared_ptr<detail::task_state_base> state) {
    if (!state->finished()) co_await state->async_wait_finished(boost::asio::use_awaitable);
    if constexpr (std::is_void_v<T>) {
      state->rethrow_outcome();
    } else {
      co_return static_cast<const detail::task_state<T>&>(*state).value();
    }
  }

  std::shared_ptr<detail::task_state_base> state_;
};

} // namespace taskyard

#endif // TASKYARD_TASK_HPP
