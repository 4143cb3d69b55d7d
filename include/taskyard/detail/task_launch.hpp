//
// taskyard/detail/task_launch.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// How a task's coroutine is set going, once its start has been posted to its executor: the
// coroutine runs, its outcome is recorded in the task's state, and the task is settled, its waiters
// woken, once its frames are gone.
//
// With the Boost versions taskyard knows the internals of (1.81), a task's coroutine is launched
// the way co_spawn launches one, on an Asio "awaitable thread", but under an entry point of
// taskyard's own (task_entry) rather than co_spawn's, which wraps the user's coroutine in one more:
// co_spawn's entry point dispatches to the executor first and posts once more at the end if the
// coroutine never suspended (two use_awaitable initiations and a trip through the scheduler, so
// that its completion handler never runs inside co_spawn's call), and taskyard's outcome is then
// recorded by a wrapper coroutine of its own between the two. taskyard's start is already posted
// and runs on the task's executor, so none of that is needed: task_entry runs the user's
// coroutine, records the outcome and settles the task, one frame under the user's. It binds the
// task's cancellation state directly to the signal that comes with the task's switch (co_spawn
// binds a handler of its own there, which forwards to a signal of its own). What co_spawn keeps,
// task_entry keeps too: a tracked executor, so that io_context::run does not return while the task
// is unfinished, the executor the coroutine runs on, and the cancellation filter (terminal only).
//
// With any other Boost, or with TASKYARD_LAUNCH_WITH_CO_SPAWN defined, a task is launched with
// co_spawn, its coroutine wrapped in run_task, and settled by co_spawn's completion handler. Both
// paths keep the same order: the frames (and the factory, and so a lambda's captures) are gone
// before the task is settled, and the state's last reference from the launch goes before a waiter
// is woken in place.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_TASK_LAUNCH_HPP
#define TASKYARD_DETAIL_TASK_LAUNCH_HPP

#include <taskyard/detail/task_state.hpp>
#include <taskyard/detail/wait_list.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/system_error.hpp>
#include <boost/version.hpp>

#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

#if !defined(TASKYARD_LAUNCH_WITH_CO_SPAWN) && BOOST_VERSION / 100 == 1081
#define TASKYARD_DETAIL_LAUNCH_DIRECT 1
#else
#define TASKYARD_DETAIL_LAUNCH_DIRECT 0
#endif

namespace taskyard::detail {

/// True if tasks are launched under taskyard's own entry point (see the top of this file), false
/// if with co_spawn.
inline constexpr bool launches_directly = TASKYARD_DETAIL_LAUNCH_DIRECT != 0;

/// Tells the task's state when the coroutine frame that holds it is destroyed, by whatever path.
class frame_guard {
public:
  explicit frame_guard(task_state_base& s) noexcept : state_(&s) {}
  frame_guard(const frame_guard&) = delete;
  frame_guard& operator=(const frame_guard&) = delete;
  ~frame_guard() { state_->frame_destroyed(); }

private:
  task_state_base* state_;
};

/// Settles a task whose coroutine has ended or could not run (`e`), and wakes its waiters: a lone
/// waiter that may run on this thread resumes here, rather than a turn later. `state` is the
/// launch's reference, and goes first: a waiter that purges the task then sees it go, as it would
/// had it been posted.
template <typename T>
void settle_launched(std::shared_ptr<task_state<T>>& state, std::exception_ptr e) {
  wait_list::node* woken = state->settle(std::move(e));
  state.reset();
  wait_list::complete_detached(woken, wait_list::wake::in_place);
}

/// The coroutine a task runs in, right under the user's: it runs the coroutine `factory` makes,
/// keeps the factory (and so a lambda's captures) until that has ended, and records the outcome in
/// the state (see task_state_base::end), classifying a failure where it is caught, which costs
/// nothing, where finding out from the exception_ptr later would rethrow it.
///
/// `Frame` is awaitable<void> under co_spawn, whose completion handler then settles the task; or
/// the entry point of an awaitable thread, and the coroutine settles the task itself once the
/// user's coroutine and the factory are gone. `work` is kept as long as the frame.
template <typename Frame, typename T, typename Factory, typename... Work>
Frame run_task(std::shared_ptr<task_state<T>> state, Factory factory, Work... work) {
  {
    const frame_guard guard(*state);
    Factory f(std::move(factory));
    std::exception_ptr failure;
    bool aborted = false;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await f();
      } else {
        state->set_value(co_await f());
      }
    } catch (const boost::system::system_error& e) {
      aborted = e.code() == boost::asio::error::operation_aborted;
      failure = std::current_exception();
    } catch (...) {
      failure = std::current_exception();
    }
    state->end(std::move(failure), aborted);
  }
  if constexpr (!std::is_same_v<Frame, boost::asio::awaitable<void>>)
    settle_launched(state, nullptr);
  ((void)work, ...);
}

#if TASKYARD_DETAIL_LAUNCH_DIRECT

using entry_point = boost::asio::awaitable<boost::asio::detail::awaitable_thread_entry_point,
                                           boost::asio::any_io_executor>;

/// Launches a task's coroutine on `ex`, its executor, with its switch taken. Called on that
/// executor. If the launch cannot be allocated, the task fails with the exception (std::bad_alloc),
/// as it would had co_spawn been unable to allocate.
template <typename T, typename Factory>
void spawn_task(task_state_base::executor_type ex, std::shared_ptr<task_state<T>> state,
                Factory&& factory) {
  using thread = boost::asio::detail::awaitable_thread<boost::asio::any_io_executor>;
  const boost::asio::cancellation_slot slot = state->cancellation_slot();
  bool launched = false;
  try {
    // The cancellation state goes in the memory the switch's signal kept from the task before.
    const boost::asio::cancellation_state cancellation(slot);
    // Outstanding work until the task's frame is gone, as co_spawn counts it.
    auto work =
        boost::asio::prefer(state->io_executor(), boost::asio::execution::outstanding_work.tracked);
    entry_point entry =
        run_task<entry_point>(state, std::forward<Factory>(factory), std::move(work));
    thread t(std::move(entry), boost::asio::any_io_executor(std::move(ex)), slot, cancellation);
    launched = true;
    t.launch();
  } catch (...) {
    if (launched) throw; // out of the task's own run, as out of co_spawn's: not a launch failure
    state->frame_destroyed(); // it never had a frame
    settle_launched(state, std::current_exception());
  }
}

#else // TASKYARD_DETAIL_LAUNCH_DIRECT

/// What co_spawn calls when a task's coroutine has ended (its frames already destroyed).
///
/// It names the task's cancellation slot as a member rather than through bind_cancellation_slot:
/// with the binder, co_spawn believes the handler has an executor of its own and forwards each
/// emitted cancellation through the task's executor, where the gate would swallow it once the App
/// gives up on the task. Without it, co_spawn emits synchronously, here on the strand.
template <typename T>
struct task_completion {
  std::shared_ptr<task_state<T>> state;

  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept {
    return state->cancellation_slot();
  }

  // Only an allocation failure in co_spawn itself arrives here as e: the task's own exceptions
  // are caught by run_task.
  void operator()(std::exception_ptr e) { settle_launched(state, std::move(e)); }
};

/// Spawns a task's coroutine on `ex`, its executor. Called on that executor.
template <typename T, typename Factory>
void spawn_task(task_state_base::executor_type ex, std::shared_ptr<task_state<T>> state,
                Factory&& factory) {
  auto coroutine = run_task<boost::asio::awaitable<void>>(state, std::forward<Factory>(factory));
  boost::asio::co_spawn(std::move(ex), std::move(coroutine), task_completion<T>{std::move(state)});
}

#endif // TASKYARD_DETAIL_LAUNCH_DIRECT

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_TASK_LAUNCH_HPP
