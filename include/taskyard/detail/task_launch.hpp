//
// taskyard/detail/task_launch.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// How a task's coroutine is set going, once its start has been posted to its executor: the
// coroutine runs, its outcome is recorded in the task's state, and the task is settled, its waiters
// woken, once its frames are gone.
//
// With the Boost version whose internals taskyard knows (1.81), a task's coroutine is launched the
// way co_spawn launches one, on an Asio "awaitable thread" (asio::detail::awaitable_thread), but
// under an entry point of taskyard's own, run_task. co_spawn's entry point would wrap it in one
// more coroutine, which dispatches to the executor first and, if the coroutine never suspended,
// posts once more at the end (two use_awaitable initiations, and a trip through the scheduler, so
// that its completion handler never runs inside co_spawn's call). A task's start is posted already
// and runs on the task's executor, so none of that is needed: run_task runs the user's coroutine,
// records the outcome and settles the task, one frame under the user's. The task's cancellation
// state is bound directly to the signal that comes with its switch (co_spawn binds a handler of
// its own there, which forwards to a signal of its own). What co_spawn keeps, run_task keeps too: a
// tracked executor, so that io_context::run does not return while the task is unfinished, the
// executor the coroutine runs on, and the cancellation filter (terminal only).
//
// With any other Boost, or with TASKYARD_LAUNCH_WITH_CO_SPAWN defined (the same way in every
// translation unit of a program), a task is launched with co_spawn, its coroutine wrapped in the
// same run_task, and settled by co_spawn's completion handler. Both paths keep the same order: the
// coroutine ends and its outcome is recorded, the factory (and so a lambda's captures) goes, the
// frame says it is gone, and the task is settled, the launch's last reference to the state gone
// before a waiter is woken in place.
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
#include <optional>
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

/// A task's factory, the nullary callable that makes its coroutine, on its way from add_task to the
/// task's frame (in the starter, the start, Asio's operation, the frame). A move leaves it empty,
/// so that what a move leaves of the callable (a lambda's const captures are copied, not moved)
/// goes at once rather than with the object moved from, which may outlive the task's end when
/// another thread runs it.
template <typename F>
class coroutine_factory {
public:
  static_assert(std::is_nothrow_move_constructible_v<F>,
                "a callable whose move may throw is boxed first: see App::make_factory");

  explicit coroutine_factory(F&& f) noexcept : f_(std::move(f)) {}
  coroutine_factory(coroutine_factory&& other) noexcept : f_(std::move(other.f_)) {
    other.f_.reset();
  }
  coroutine_factory(const coroutine_factory&) = delete;
  coroutine_factory& operator=(const coroutine_factory&) = delete;
  coroutine_factory& operator=(coroutine_factory&&) = delete;
  ~coroutine_factory() = default;

  decltype(auto) operator()() { return (*f_)(); }
  void reset() noexcept { f_.reset(); }

private:
  std::optional<F> f_;
};

/// What a task's frame holds of the task: its state and its factory. The factory goes first, then
/// the state is told that the frame is gone (see task_state_base::frame_destroyed), whether the
/// frame ends (release) or is destroyed where it is suspended.
template <typename T, typename F>
class frame_ref {
public:
  frame_ref(std::shared_ptr<task_state<T>> s, coroutine_factory<F>&& f) noexcept
      : state_(std::move(s)), factory_(std::move(f)) {}
  frame_ref(frame_ref&& other) noexcept = default;
  frame_ref(const frame_ref&) = delete;
  frame_ref& operator=(const frame_ref&) = delete;
  frame_ref& operator=(frame_ref&&) = delete;
  ~frame_ref() {
    if (state_) let_go();
  }

  task_state<T>* operator->() const noexcept { return state_.get(); }
  decltype(auto) make_coroutine() { return factory_(); }

  /// Ends what the frame holds of the task, as its destruction would, and hands the state over.
  std::shared_ptr<task_state<T>> release() noexcept {
    let_go();
    return std::move(state_);
  }

private:
  // The one order, whichever way the frame goes: the factory, then the word that it is gone.
  void let_go() noexcept {
    factory_.reset();
    state_->frame_destroyed();
  }

  std::shared_ptr<task_state<T>> state_;
  coroutine_factory<F> factory_;
};

/// Settles a task whose coroutine has ended or could not run (`e`), and wakes its waiters: a lone
/// waiter that may run on this thread resumes here, rather than a turn later. `state` is the
/// launch's last reference, and goes first: a waiter that purges the task then sees it go, as it
/// would had it been posted.
template <typename T>
void settle_launched(std::shared_ptr<task_state<T>> state, std::exception_ptr e) {
  wait_list::node* woken = state->settle(std::move(e));
  state.reset();
  wait_list::complete_detached(woken, wait_list::wake::in_place);
}

/// Settles a task that could not be launched (`e`: an allocation failed), which never had a frame,
/// or whose frame is gone.
template <typename T>
void settle_unlaunched(std::shared_ptr<task_state<T>> state, std::exception_ptr e) {
  state->frame_destroyed();
  settle_launched(std::move(state), std::move(e));
}

/// The coroutine a task runs in, right under the user's: it runs the coroutine the factory makes,
/// keeps the factory (and so a lambda's captures) until that has ended, and records the outcome in
/// the state (see task_state_base::end), classifying a failure where it is caught, which costs
/// nothing, where finding out from the exception_ptr later would rethrow it.
///
/// `Frame` is awaitable<void> under co_spawn, whose completion handler then settles the task once
/// this frame is gone. Or it is the entry point of an awaitable thread, and the coroutine settles
/// the task itself, in the same order: the factory goes, the state is told the frame is gone, and
/// the task is settled with this frame's reference handed over. Nothing of the user's is left in
/// the frame then (but `work`, an executor counting outstanding work, kept as long as the frame).
template <typename Frame, typename T, typename F, typename... Work>
Frame run_task(frame_ref<T, F> frame, Work... work) {
  std::exception_ptr failure;
  bool aborted = false;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await frame.make_coroutine();
    } else {
      frame->set_value(co_await frame.make_coroutine());
    }
  } catch (const boost::system::system_error& e) {
    aborted = e.code() == boost::asio::error::operation_aborted;
    failure = std::current_exception();
  } catch (...) {
    failure = std::current_exception();
  }
  frame->end(std::move(failure), aborted);
  if constexpr (!std::is_same_v<Frame, boost::asio::awaitable<void>>)
    settle_launched(frame.release(), nullptr);
  ((void)work, ...);
}

#if TASKYARD_DETAIL_LAUNCH_DIRECT

using entry_point = boost::asio::awaitable<boost::asio::detail::awaitable_thread_entry_point,
                                           boost::asio::any_io_executor>;

/// Launches a task's coroutine on its executor, with its switch `gate` taken, and takes its
/// factory. Called on that executor. If the launch cannot be allocated, the task fails with the
/// exception (std::bad_alloc). If the App gave up on the task meanwhile (its switch is thrown), the
/// coroutine never runs, as nothing submitted to its executor would.
template <typename T, typename F>
void spawn_task(const gate_ref& gate, std::shared_ptr<task_state<T>> state,
                coroutine_factory<F>& factory) {
  using thread = boost::asio::detail::awaitable_thread<boost::asio::any_io_executor>;
  const boost::asio::cancellation_slot slot = state->cancellation_slot();
  std::exception_ptr failure;
  try {
    // The cancellation state goes in the memory the switch's signal kept from the task before.
    const boost::asio::cancellation_state cancellation(slot);
    // Outstanding work until the task's frame is gone, as co_spawn counts it.
    auto work =
        boost::asio::prefer(state->io_executor(), boost::asio::execution::outstanding_work.tracked);
    entry_point entry =
        run_task<entry_point>(frame_ref<T, F>(state, std::move(factory)), std::move(work));
    if (gate.thrown()) return; // the frame goes with `entry`, unrun, and says so
    const task_state_base::executor_type ex(state->io_executor(), gate);
    thread t(std::move(entry), boost::asio::any_io_executor(ex), slot, cancellation);
    // The frame holds the task now: a task that never suspends is settled inside launch(), by
    // then with no other reference from here.
    state.reset();
    // What comes out of launch() comes out of the task's run (a waiter resumed in place that
    // failed), as out of co_spawn's: not a launch failure, and it goes on out of io_context::run.
    t.launch();
    return;
  } catch (...) {
    if (!state) throw;
    failure = std::current_exception();
  }
  settle_unlaunched(std::move(state), std::move(failure));
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

  // The task's own exceptions are caught by run_task: `e` is null.
  void operator()(std::exception_ptr e) { settle_launched(std::move(state), std::move(e)); }
};

/// Spawns a task's coroutine on its executor, with its switch `gate` taken, and takes its factory.
/// Called on that executor. If the launch cannot be allocated, the task fails with the exception
/// (std::bad_alloc).
template <typename T, typename F>
void spawn_task(const gate_ref& gate, std::shared_ptr<task_state<T>> state,
                coroutine_factory<F>& factory) {
  std::exception_ptr failure;
  try {
    task_state_base::executor_type ex(state->io_executor(), gate);
    auto coroutine =
        run_task<boost::asio::awaitable<void>>(frame_ref<T, F>(state, std::move(factory)));
    // co_spawn completes a coroutine only after it has suspended, or after one more post: never
    // inside this call, so whatever comes out of it is a failure to launch (or to post at the end,
    // once the coroutine has ended, and then its outcome stands: see task_state_base::settle).
    boost::asio::co_spawn(std::move(ex), std::move(coroutine), task_completion<T>{state});
    return;
  } catch (...) {
    failure = std::current_exception();
  }
  settle_unlaunched(std::move(state), std::move(failure));
}

#endif // TASKYARD_DETAIL_LAUNCH_DIRECT

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_TASK_LAUNCH_HPP
