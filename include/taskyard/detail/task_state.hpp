//
// taskyard/detail/task_state.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The one object behind a task: name, status, outcome, switch and waiters. Task<T>
// handles, the registry and the running coroutine share it; the coroutine frame is owned by the
// operation the task is suspended on, never by the state.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_TASK_STATE_HPP
#define TASKYARD_DETAIL_TASK_STATE_HPP

#include <taskyard/detail/intrusive_list.hpp>
#include <taskyard/detail/small_mutex.hpp>
#include <taskyard/detail/task_executor.hpp>
#include <taskyard/detail/wait_list.hpp>
#include <taskyard/errors.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>

namespace taskyard::detail {

enum class task_status : unsigned char { pending, running, succeeded, failed, cancelled };

class task_state_base;

/// What a task reports to the App that owns it. Implemented by the App's core, which the state
/// keeps alive, so a task that outlives its App still has somewhere to report to.
class task_owner {
public:
  virtual ~task_owner() = default;
  /// The task has finished (or was given up on); called once, with no lock held.
  virtual void task_finished(task_state_base& task) noexcept = 0;
  /// The frame of a task that was given up on has been destroyed.
  virtual void abandoned_frame_destroyed() noexcept = 0;
  /// The task failed and its exception was never observed; called once, from the state's
  /// destructor.
  virtual void unobserved_exception(const std::string& task_name,
                                    std::exception_ptr e) noexcept = 0;
};

inline bool is_operation_aborted(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& se) {
    return se.code() == boost::asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

inline std::string display_name(const std::string& name) {
  return name.empty() ? std::string("<unnamed>") : "'" + name + "'";
}

class task_state_base {
public:
  using io_executor_type = boost::asio::io_context::executor_type;
  /// A task's executor: the io_context's executor, with the task's switch and strand (see
  /// task_gate.hpp).
  using executor_type = task_executor<io_executor_type>;

  /// A task of the io_context `io` runs on; its strand, if it needs one, comes with its switch.
  task_state_base(std::string&& name, std::shared_ptr<task_owner> owner, io_executor_type io)
      : name_(std::move(name)), owner_(std::move(owner)), io_executor_(std::move(io)) {}

  task_state_base(const task_state_base&) = delete;
  task_state_base& operator=(const task_state_base&) = delete;

  virtual ~task_state_base() {
    if (status_ == task_status::failed && !observed_ && owner_)
      owner_->unobserved_exception(name_, exception_);
  }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The type the task produces (typeid(void) for none).
  [[nodiscard]] virtual const std::type_info& result_type() const noexcept = 0;
  [[nodiscard]] const io_executor_type& io_executor() const noexcept { return io_executor_; }

  // The status is written under the mutex, and read without it: once it says finished it never
  // changes again. What else a task holds (outcome, message, forced) is read under the mutex.
  [[nodiscard]] task_status status() const noexcept {
    return status_.load(std::memory_order_acquire);
  }

  [[nodiscard]] bool finished() const noexcept { return finished_locked(); }

  [[nodiscard]] std::string cancel_message() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return cancel_message_ ? *cancel_message_ : std::string();
  }

  /// Requests cancellation; see Task::cancel. Returns false if the task had already finished, or
  /// its coroutine had already ended (its outcome is settled even if done() is not yet true).
  bool request_cancel(std::string message) {
    std::unique_lock<small_mutex> lock(mutex_);
    if (finished_locked() || ended_) return false;
    cancel_requested_ = true;
    set_cancel_message(std::move(message));
    if (status_ == task_status::pending) {
      // Never started: nothing to interrupt, it is cancelled here and now.
      set_status(task_status::cancelled);
      release_gate_locked();
      complete_locked(lock);
      return true;
    }
    const gate_ref gate = gate_;
    lock.unlock();
    emit_cancellation(gate);
    return true;
  }

  /// Gives a pending task its switch, and with it its strand, from `gates` (see task_gate.hpp);
  /// the switch goes back to `gates` when the task finishes. Returns it, or no switch (an invalid
  /// one) if the task was cancelled, or given up on, before it could start.
  ///
  /// The task's start is then being posted to that strand, until start_posted(): meanwhile the
  /// switch does not go back to `gates` even if the task finishes (it is cancelled), since the
  /// post may yet fail in a way that leaves the strand unusable (see finish_on_stuck_strand).
  gate_ref take_gate(gate_pool& gates) {
    std::lock_guard<small_mutex> lock(mutex_);
    const gate_ref gate = take_gate_locked(gates);
    if (gate.valid()) flags_.fetch_or(posting_start, std::memory_order_relaxed);
    return gate;
  }

  /// Ends what take_gate began, once the start is posted (or could not be, leaving the strand
  /// usable): hands the switch back now if that was put off meanwhile.
  void start_posted() {
    std::lock_guard<small_mutex> lock(mutex_);
    const unsigned before =
        flags_.fetch_and(~(posting_start | release_put_off), std::memory_order_relaxed);
    if ((before & release_put_off) != 0) release_gate_locked();
  }

  /// Marks a pending task as running, and returns its switch, taking one from `gates` if it has
  /// none yet. Returns no switch if it was cancelled, or given up on, before it could start.
  /// Called where the task runs.
  gate_ref begin_running(gate_pool& gates) {
    std::lock_guard<small_mutex> lock(mutex_);
    const gate_ref gate = take_gate_locked(gates);
    if (!gate.valid()) return gate;
    set_status(task_status::running);
    flags_.fetch_or(frame_alive, std::memory_order_relaxed);
    return gate;
  }

  /// Called by the task's coroutine as it ends, with the exception it ended by (or null), and
  /// whether that exception is operation_aborted (told by the catch that caught it, which costs
  /// nothing, where finding out from the exception_ptr would rethrow it). Settles the outcome: a
  /// cancellation requested from now on comes too late to change it.
  void end(std::exception_ptr e, bool aborted) noexcept {
    std::lock_guard<small_mutex> lock(mutex_);
    exception_ = std::move(e);
    ended_aborted_ = aborted;
    ended_ = true;
    ended_after_cancel_ = cancel_requested_;
  }

  /// Finishes a task that fails before its coroutine could run (`e`: its gate pool could not
  /// grow, or its start could not be allocated), waking the waiters through their executors.
  void finish(std::exception_ptr e) { wait_list::complete_detached(settle(std::move(e))); }

  /// As finish, for a task whose start Asio queued on its strand but could not schedule the strand
  /// (an allocation failed): Asio leaves such a strand locked, and nothing queued on it ever runs.
  /// The task's switch is thrown, so that its strand goes to no other task.
  void finish_on_stuck_strand(std::exception_ptr e) {
    {
      // Still held: since take_gate, nothing has handed it back (a cancellation may have finished
      // the task meanwhile, but left the switch to start_posted).
      std::lock_guard<small_mutex> lock(mutex_);
      flags_.fetch_and(~(posting_start | release_put_off), std::memory_order_relaxed);
      if (gate_.valid()) gate_.throw_switch();
    }
    finish(std::move(e));
  }

  /// Settles the outcome of a task whose coroutine has ended (see end) or could not run (`e`, if
  /// end was never called: an allocation failure in its launch, or finish's), and returns the
  /// waiters, unlinked, for the caller to wake with wait_list::complete_detached once it no longer
  /// needs the state (each waiter keeps the state alive itself). Called on the task's strand by
  /// its launch (see task_launch.hpp), once the user's coroutine frames are gone and nothing will
  /// use the task's cancellation signal again. Null if there are no waiters, or if the
  /// task had already finished (given up on, or finished by abandon).
  [[nodiscard]] wait_list::node* settle(std::exception_ptr e) {
    std::unique_lock<small_mutex> lock(mutex_);
    // The switch goes back here, where the launch is done with the cancellation signal that comes
    // with it, even if the task was finished by abandon (a switch that was thrown stays thrown).
    release_gate_locked();
    if (finished_locked()) return nullptr; // given up on already
    if (!ended_) {
      exception_ = std::move(e);
      ended_aborted_ = is_operation_aborted(exception_);
    }
    set_outcome_locked();
    return settle_locked(lock);
  }

  /// Throws the task's switch: from now on nothing submitted to its executor runs (see
  /// task_executor), and a task that has not started never will. Returns true if its coroutine
  /// frame still exists. Called while the io_context, and so the switch, exists.
  bool abandon_gate() {
    std::lock_guard<small_mutex> lock(mutex_);
    const unsigned before = flags_.fetch_or(abandoned, std::memory_order_acq_rel);
    // A task that has not started has no executor to stop yet (and never will: begin_running
    // refuses it now), so its switch goes back to the pool as it is cancelled; nor has a task whose
    // coroutine has ended, which abandon finishes with its outcome, as its completion would.
    if (gate_.valid() && status_ == task_status::running && !ended_) gate_.throw_switch();
    return (before & frame_alive) != 0;
  }

  /// Gives up on a task that ignored cancellation, after abandon_gate: it counts as cancelled from
  /// now on, and its frames are destroyed when the operation it waits on is cancelled (or when the
  /// io_context is destroyed, for an operation that cannot be cancelled). Returns true if it gave
  /// up on the task; false if the task had finished, or if its coroutine had already ended (it
  /// raced with shutdown and won): such a task finishes here with the outcome it ended with, as
  /// its completion, which finds it finished, would have. Its completion still hands its switch
  /// back: until then the launch's frames may use the cancellation signal that comes with it.
  bool abandon() {
    std::unique_lock<small_mutex> lock(mutex_);
    if (finished_locked()) return false; // its frames are gone already
    if (ended_) {
      set_outcome_locked();
      complete_locked(lock);
      return false;
    }
    const gate_ref gate = gate_;
    cancel_requested_ = true;
    set_status(task_status::cancelled);
    forced_ = true;
    release_gate_locked(); // a task that never started; a running task's switch is thrown
    complete_locked(lock);
    emit_cancellation(gate);
    return true;
  }

  /// Called when the task's coroutine frame is destroyed, by whatever path.
  /// Idempotent: only the first call after begin_running reports.
  void frame_destroyed() noexcept {
    const unsigned before = flags_.fetch_and(~frame_alive, std::memory_order_acq_rel);
    if ((before & frame_alive) != 0 && (before & abandoned) != 0 && owner_)
      owner_->abandoned_frame_destroyed();
  }

  [[nodiscard]] bool forced() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return forced_;
  }

  /// The failure of a finished task (null if it succeeded or was cancelled); marks it observed.
  [[nodiscard]] std::exception_ptr take_failure() const {
    std::lock_guard<small_mutex> lock(mutex_);
    if (status_ != task_status::failed) return nullptr;
    observed_ = true;
    return exception_;
  }

  /// Throws what waiting for a finished task must throw: its failure, or operation_aborted if it
  /// was cancelled. Marks the failure observed.
  void rethrow_outcome() const {
    std::unique_lock<small_mutex> lock(mutex_);
    if (!finished_locked()) throw task_not_finished(name_);
    if (status_ == task_status::failed) {
      observed_ = true;
      std::exception_ptr e = exception_;
      lock.unlock();
      std::rethrow_exception(e);
    }
    if (status_ == task_status::cancelled) {
      std::string what = "taskyard: task " + display_name(name_) + " was cancelled";
      if (cancel_message_) what += ": " + *cancel_message_;
      lock.unlock();
      throw boost::system::system_error(boost::asio::error::operation_aborted, what);
    }
  }

  /// Waits until the task has finished (whatever the outcome). Cancellable: completes with
  /// operation_aborted if the waiter's cancellation slot is emitted first.
  template <typename CompletionToken>
  auto async_wait_finished(CompletionToken&& token) {
    task_state_base* self = this; // not [this]: see app_core::async_wait_change
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [self](auto handler) {
          std::unique_lock<small_mutex> lock(self->mutex_);
          if (!self->finished_locked()) {
            self->waiters_.push(std::move(handler), self->io_executor_, self->mutex_);
            return;
          }
          lock.unlock();
          auto ex = boost::asio::get_associated_executor(handler, self->io_executor_);
          boost::asio::post(ex, [h = std::move(handler)]() mutable {
            std::move(h)(boost::system::error_code{});
          });
        },
        token);
  }

  /// The slot the task's launch binds its cancellation to.
  boost::asio::cancellation_slot cancellation_slot() noexcept { return gate_.cancellation_slot(); }

  // Links in the owner's list of unfinished tasks, and in the registry's registration order; each
  // guarded by the owner's (respectively the registry's) mutex.
  list_links<task_state_base> live_links;
  std::shared_ptr<task_state_base> live_self; // the list's own reference, while linked
  list_links<task_state_base> registry_links;

private:
  [[nodiscard]] bool finished_locked() const noexcept {
    const task_status s = status();
    return s != task_status::pending && s != task_status::running;
  }

  void set_status(task_status s) noexcept { status_.store(s, std::memory_order_release); }

  // The status of a task whose coroutine has ended, from how it ended (see end). Requires mutex_.
  void set_outcome_locked() noexcept {
    if (exception_) {
      set_status(ended_aborted_ ? task_status::cancelled : task_status::failed);
    } else {
      set_status(ended_after_cancel_ ? task_status::cancelled : task_status::succeeded);
    }
  }

  void set_cancel_message(std::string message) {
    if (message.empty())
      cancel_message_.reset();
    else
      cancel_message_ = std::make_unique<std::string>(std::move(message));
  }

  gate_ref take_gate_locked(gate_pool& gates) {
    if (status_ != task_status::pending || (flags_.load() & abandoned) != 0) return {};
    if (!gate_.valid()) {
      gate_ = gates.acquire();
      gates_ = &gates;
    }
    return gate_;
  }

  // Hands the switch back, unless it was thrown, or handed back already; or, while the task's
  // start is being posted, puts that off until start_posted. Only where the launch has not run for
  // the task, or is done with its signal: the switch's cancellation signal holds the handler the
  // launch installed, and the next task to take the switch replaces it.
  void release_gate_locked() {
    if (gates_ == nullptr) return;
    if ((flags_.load(std::memory_order_relaxed) & posting_start) != 0)
      flags_.fetch_or(release_put_off, std::memory_order_relaxed);
    else
      gates_->release(gate_);
  }

  // Called once the status says finished: tells the owner (which may unregister the task), and only
  // then wakes the waiters, so that a waiter sees the task gone from the registry under auto_purge.
  void complete_locked(std::unique_lock<small_mutex>& lock) {
    wait_list::complete_detached(settle_locked(lock));
  }

  // complete_locked, except that the waiters are returned rather than woken.
  [[nodiscard]] wait_list::node* settle_locked(std::unique_lock<small_mutex>& lock) {
    wait_list::node* woken = waiters_.detach_all();
    lock.unlock();
    if (owner_) owner_->task_finished(*this);
    return woken;
  }

  // The signal may only be emitted where the task runs: its strand (or, without one, the
  // io_context's executor, which one thread runs), which is its executor without the switch, so
  // cancellation still reaches a task that has been given up on. Called for an unfinished task
  // only; if it finishes in the meantime and its switch goes to another task, the strand that comes
  // with the switch is still the one it ran on, and emit_terminal sees another generation: dropped.
  //
  // Always posted, never emitted in place, even from the task's own thread: a terminal
  // cancellation also reaches the coroutines the task has co_spawn'd and awaits, and one of them
  // may be the caller, running; marked cancelled while running, it would see the cancellation at
  // co_spawn's own last co_await if it ended without suspending again, and throw it out of
  // io_context::run. Posted, it reaches them all where they are suspended.
  void emit_cancellation(const gate_ref& gate) {
    if (!gate.valid()) return; // no switch: it never started, nothing to interrupt
    post_to_task(gate, io_executor_, [gate] { gate.emit_terminal(); });
  }

  // Bits of flags_.
  static constexpr unsigned abandoned = 1;       // given up on: its switch is thrown
  static constexpr unsigned frame_alive = 2;     // its coroutine frame exists
  static constexpr unsigned posting_start = 4;   // see take_gate
  static constexpr unsigned release_put_off = 8; // see release_gate_locked

  // A million tasks may be registered at once: ordered so, the members leave one byte of padding.
  const std::string name_;
  std::shared_ptr<task_owner> owner_;
  const io_executor_type io_executor_; // waiters' fallback, and under the task's executor
  mutable small_mutex mutex_;
  std::atomic<unsigned> flags_{0};
  std::atomic<task_status> status_{task_status::pending}; // written under mutex_
  bool cancel_requested_ = false;
  bool ended_ = false;              // the coroutine has returned or thrown
  bool ended_after_cancel_ = false; // ... after its cancellation was requested
  bool ended_aborted_ = false;      // ... by operation_aborted
  bool forced_ = false;
  mutable bool observed_ = false;
  gate_ref gate_;              // from take_gate on
  gate_pool* gates_ = nullptr; // ... which gave it
  // Only if one was given: most cancellations have none.
  std::unique_ptr<std::string> cancel_message_;
  std::exception_ptr exception_;
  wait_list waiters_;
};

template <typename T>
class task_state final : public task_state_base {
public:
  using task_state_base::task_state_base;

  [[nodiscard]] const std::type_info& result_type() const noexcept override { return typeid(T); }

  void set_value(T value) { value_.emplace(std::move(value)); }

  /// The result of a task that succeeded; rethrows its failure or cancellation otherwise.
  const T& value() const {
    rethrow_outcome();
    return *value_;
  }

private:
  std::optional<T> value_;
};

template <>
class task_state<void> final : public task_state_base {
public:
  using task_state_base::task_state_base;

  [[nodiscard]] const std::type_info& result_type() const noexcept override { return typeid(void); }

  void value() const { rethrow_outcome(); }
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_TASK_STATE_HPP
