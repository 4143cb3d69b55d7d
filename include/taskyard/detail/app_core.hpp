//
// taskyard/detail/app_core.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The part of an App that its tasks report to: the registry, the list of unfinished tasks, the
// lifecycle phase, the tasks deferred until run, and the config. Task states keep it alive, so a
// task or handle that outlives its App still reports somewhere; App's destructor cuts the links
// that would otherwise make it immortal.
//
// Lock order: app_core::mutex, then registry, then a task's own mutex. No lock is held while a
// task is started, cancelled or destroyed.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_APP_CORE_HPP
#define TASKYARD_DETAIL_APP_CORE_HPP

#include <taskyard/config.hpp>
#include <taskyard/detail/intrusive_list.hpp>
#include <taskyard/detail/small_mutex.hpp>
#include <taskyard/detail/task_launch.hpp>
#include <taskyard/detail/task_state.hpp>
#include <taskyard/detail/wait_list.hpp>
#include <taskyard/errors.hpp>
#include <taskyard/events.hpp>
#include <taskyard/registry.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <cstddef>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace taskyard::detail {

enum class app_phase : unsigned char {
  created,  ///< before run/serve: tasks are deferred until the App starts
  running,  ///< tasks start as they are added
  draining, ///< shutdown_tasks has begun: no task may be added
  stopped,  ///< the lifecycle is over, or the App is being destroyed
};

/// A task added before the App started, waiting to be started by it.
class deferred_start {
public:
  virtual ~deferred_start() = default;
  virtual void start() = 0;
};

/// Returns `take()` (take_gate or begin_running). If the gate pool cannot grow, the task fails with
/// std::bad_alloc, as it would if its launch could not allocate, and no switch is returned.
template <typename Take>
gate_ref take_gate_or_fail(task_state_base& state, Take take) {
  try {
    return take();
  } catch (...) {
    state.finish(std::current_exception());
    return {};
  }
}

/// What start_task posts: it takes the task's switch (marking it running) and spawns its coroutine.
template <typename T, typename F>
struct task_start {
  gate_pool* gates;
  coroutine_factory<F> factory;
  std::shared_ptr<task_state<T>> state;

  void operator()() {
    const gate_ref running =
        take_gate_or_fail(*state, [&] { return state->begin_running(*gates); });
    if (!running.valid()) return; // cancelled before it could start, or failed
    spawn_task<T>(running, std::move(state), factory);
  }
};

/// Starts a task: never inline. The start is posted to the task's strand (or, on an io_context run
/// by one thread, to the io_context), and the coroutine is spawned from there; spawning directly
/// would run it at once when the caller is itself running on the io_context (its executor runs
/// possibly-blocking work in place). `gates` is the io_context's gate_pool. A task that needs a
/// strand takes its switch now, since the strand comes with it; one that does not, as it starts,
/// so that a task cancelled before then never takes one.
///
/// A task that cannot be started (its switch or its start cannot be allocated) fails with the
/// exception, std::bad_alloc, as it would had its launch been unable to allocate: it is not thrown.
template <typename T, typename F>
void start_task(gate_pool& gates, std::shared_ptr<task_state<T>> state,
                coroutine_factory<F>&& factory) {
  gate_ref gate;
  std::shared_ptr<task_state<T>> posting; // with a strand: the state, until start_posted
  if (gates.strands()) {
    gate = take_gate_or_fail(*state, [&] { return state->take_gate(gates); });
    if (!gate.valid()) return; // cancelled before it could start, or failed
    posting = state;
  }
  const auto io = state->io_executor();
  task_state<T>& s = *state;
  task_start<T, F> start{&gates, std::move(factory), std::move(state)};
  try {
    post_to_task(gate, io, std::move(start));
  } catch (...) {
    if (!start.state) {
      // The start was queued on the task's strand, whose scheduling failed: it stays there, and
      // keeps the state alive, until the io_context goes.
      s.finish_on_stuck_strand(std::current_exception());
      return;
    }
    // Asio moves the start into its operation only once it has made it: nothing was queued.
    if (posting) posting->start_posted();
    start.state->finish(std::current_exception());
    return;
  }
  if (posting) posting->start_posted();
}

class app_core final : public task_owner, public std::enable_shared_from_this<app_core> {
public:
  app_core(std::string app_name, boost::asio::io_context& context)
      : name(std::move(app_name)), ioc(context),
        gates(boost::asio::use_service<gate_pool>(context)), events(context.get_executor()) {}

  app_core(const app_core&) = delete;
  app_core& operator=(const app_core&) = delete;

  ~app_core() override {
    changes_.destroy_all();
    stop_waiters_.destroy_all();
  }

  const std::string name;
  boost::asio::io_context& ioc;
  /// The switches behind the tasks' executors: the io_context's, so they outlive the App.
  gate_pool& gates;

  taskyard::config config;
  taskyard::registry registry;
  taskyard::event_hub events;

  /// Registers (if named) and tracks a new task, then starts it, or defers it if the App has not
  /// started. `starter()` starts the task; it is called at most once, with no lock held.
  template <typename Starter>
  void admit(const std::shared_ptr<task_state_base>& state, name_conflict on_conflict,
             Starter&& starter) {
    // The name's previous holder is released after the locks: if it is the last reference to a
    // failed task, its destructor reports to the exception handler, which may call the App.
    std::optional<Task<>> previous;
    std::unique_ptr<deferred_start> later;
    bool start_now = false;
    {
      std::lock_guard<small_mutex> lock(mutex_);
      if (phase_ >= app_phase::draining) throw app_stopped(name);
      // What may throw comes first: once the task is registered, it must be started or deferred.
      if (phase_ == app_phase::created) {
        if (deferred_.size() == deferred_.capacity())
          deferred_.reserve(deferred_.empty() ? 16 : 2 * deferred_.size());
        later = std::make_unique<deferred<std::decay_t<Starter>>>(std::forward<Starter>(starter));
      }
      if (!state->name().empty()) previous = registry.insert(Task<>(state), on_conflict);
      live_.push_back(*state);
      state->live_self = state;
      if (later)
        deferred_.push_back(std::move(later)); // room was made above
      else
        start_now = true;
    }
    // A running previous holder was displaced by name_conflict::replace, and is cancelled before
    // the new task starts (a finished one needs nothing). Should that throw (it allocates), the
    // new task, registered already, still starts.
    if (previous && !previous->done()) {
      try {
        previous->cancel("replaced by a new task named '" + state->name() + "'");
      } catch (...) {
        if (start_now) starter();
        throw;
      }
    }
    if (start_now) starter();
  }

  /// created -> running; throws app_running if the App has already been started.
  void begin() {
    std::lock_guard<small_mutex> lock(mutex_);
    if (phase_ != app_phase::created) throw app_running(name);
    phase_ = app_phase::running;
  }

  /// Starts the tasks added before the App started, in the order they were added.
  void start_deferred() {
    std::vector<std::unique_ptr<deferred_start>> todo;
    {
      std::lock_guard<small_mutex> lock(mutex_);
      todo.swap(deferred_);
    }
    for (auto& d : todo) d->start();
  }

  void request_stop() {
    std::unique_lock<small_mutex> lock(mutex_);
    stop_requested_ = true;
    if (!stop_waiters_.empty()) stop_waiters_.complete_all(lock);
    notify_changes(lock);
  }

  void set_phase_at_least(app_phase p) {
    std::lock_guard<small_mutex> lock(mutex_);
    if (phase_ < p) phase_ = p;
  }

  /// Strong references to every unfinished task, in the order they were added.
  [[nodiscard]] std::vector<std::shared_ptr<task_state_base>> live_tasks() const {
    std::lock_guard<small_mutex> lock(mutex_);
    std::vector<std::shared_ptr<task_state_base>> out;
    out.reserve(live_.size());
    for (task_state_base* s = live_.front(); s != nullptr; s = live_list::next(*s))
      out.push_back(s->live_self); // the list's own reference: every task in it has one
    return out;
  }

  /// Gives up on a task (see task_state_base::abandon), counting its frame if it still exists.
  /// Returns true if it gave up on it; false if the task finished first, if only just.
  bool abandon(task_state_base& task) {
    {
      std::lock_guard<small_mutex> lock(mutex_);
      if (task.abandon_gate()) ++abandoned_frames_;
    }
    return task.abandon();
  }

  /// Destroys the tasks deferred until a start that will now never come.
  void drop_deferred() {
    std::vector<std::unique_ptr<deferred_start>> dropped;
    std::lock_guard<small_mutex> lock(mutex_);
    dropped.swap(deferred_);
  }

  /// What may make a wait_until predicate true.
  enum class wake_on : unsigned char {
    stop,   ///< a stop request only
    change, ///< a stop request, or a change in the number of unfinished tasks or abandoned frames
  };

  /// Waits until `pred()`, evaluated under the core's mutex, holds; re-checked on what `on` names
  /// (so that a wait for a stop alone is not woken by every task that finishes). Cancellable.
  template <typename Pred>
  static boost::asio::awaitable<void> wait_until(std::shared_ptr<app_core> self, Pred pred,
                                                 wake_on on = wake_on::change) {
    while (!self->check(pred))
      co_await self->async_wait_change(pred, on, boost::asio::use_awaitable);
  }

  /// True once the App is being destroyed.
  [[nodiscard]] bool closed() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return closed_;
  }

  [[nodiscard]] bool stop_requested() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return stop_requested_;
  }
  [[nodiscard]] bool stop_requested_locked() const noexcept { return stop_requested_; }
  [[nodiscard]] std::size_t live_count_locked() const noexcept { return live_.size(); }
  /// How many unfinished tasks satisfy `pred(const task_state_base&)`.
  template <typename Pred>
  [[nodiscard]] std::size_t count_live_locked(Pred pred) const {
    std::size_t n = 0;
    for (const task_state_base* s = live_.front(); s != nullptr; s = live_list::next(*s))
      n += pred(*s) ? 1 : 0;
    return n;
  }
  [[nodiscard]] std::size_t abandoned_frames_locked() const noexcept { return abandoned_frames_; }

  /// App teardown, first step: the lifecycle is over, and every coroutine waiting on the core (the
  /// App's own lifecycle and shutdown) is destroyed rather than resumed, now and from now on, since
  /// those coroutines belong to the App that is going away.
  void close() noexcept {
    events.close();
    std::lock_guard<small_mutex> lock(mutex_);
    phase_ = app_phase::stopped;
    closed_ = true;
    changes_.destroy_all();
    stop_waiters_.destroy_all();
  }

  /// Drops the references that tasks and the core hold to each other.
  void clear() {
    registry.clear();
    drop_deferred();
  }

  // task_owner
  void task_finished(task_state_base& task) noexcept override {
    std::shared_ptr<task_state_base> keep; // released after the lock
    std::unique_lock<small_mutex> lock(mutex_);
    if (live_.contains(task)) {
      live_.erase(task);
      keep = std::move(task.live_self);
    }
    if (config.auto_purge && !task.name().empty() && keep) {
      try {
        registry.erase(Task<>(keep));
      } catch (...) { // NOLINT(bugprone-empty-catch): erase only throws on a broken mutex
      }
    }
    notify_changes(lock);
    lock.unlock();
  }

  void abandoned_frame_destroyed() noexcept override {
    std::unique_lock<small_mutex> lock(mutex_);
    if (abandoned_frames_ > 0) --abandoned_frames_;
    notify_changes(lock);
  }

  void unobserved_exception(const std::string& task_name, std::exception_ptr e) noexcept override {
    try {
      if (config.exception_handler)
        config.exception_handler(task_name, e);
      else
        print_unobserved_exception(task_name, e);
    } catch (...) {
      try {
        std::cerr << "taskyard: the exception handler of app '" << name
                  << "' threw while reporting the failure of task " << display_name(task_name)
                  << "; both exceptions were dropped\n";
      } catch (...) { // NOLINT(bugprone-empty-catch): nowhere left to report to
      }
    }
  }

private:
  template <typename Starter>
  class deferred final : public deferred_start {
  public:
    explicit deferred(Starter s) : starter_(std::move(s)) {}
    void start() override { starter_(); }

  private:
    Starter starter_;
  };

  /// Completes at once if pred() holds, otherwise at the next change `on` names (or with
  /// operation_aborted if the waiter is cancelled). The caller re-checks pred() after waking.
  template <typename Pred, typename CompletionToken>
  auto async_wait_change(Pred pred, wake_on on, CompletionToken&& token) {
    // An explicit pointer, not [this]: g++ 12 miscomputes an implicitly captured `this` in a
    // generic lambda of a class with several bases.
    app_core* self = this;
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [self, pred, on](auto handler) {
          std::unique_lock<small_mutex> lock(self->mutex_);
          if (self->closed_) return; // the handler, and the coroutine it resumes, are destroyed
          if (!pred()) {
            auto& list = on == wake_on::stop ? self->stop_waiters_ : self->changes_;
            list.push(std::move(handler), self->ioc.get_executor(), self->mutex_);
            return;
          }
          lock.unlock();
          auto ex = boost::asio::get_associated_executor(handler, self->ioc.get_executor());
          boost::asio::post(ex, [h = std::move(handler)]() mutable {
            std::move(h)(boost::system::error_code{});
          });
        },
        token);
  }

  template <typename Pred>
  bool check(Pred& pred) const {
    std::lock_guard<small_mutex> lock(mutex_);
    return pred();
  }

  void notify_changes(std::unique_lock<small_mutex>& lock) {
    if (!changes_.empty()) changes_.complete_all(lock);
  }

  using live_list = intrusive_list<task_state_base, &task_state_base::live_links>;

  mutable small_mutex mutex_;
  app_phase phase_ = app_phase::created;
  bool stop_requested_ = false;
  bool closed_ = false;
  live_list live_; // every task added and not yet finished, in the order added
  std::size_t abandoned_frames_ = 0;
  std::vector<std::unique_ptr<deferred_start>> deferred_;
  wait_list changes_;      // wait_until(..., wake_on::change)
  wait_list stop_waiters_; // wait_until(..., wake_on::stop)
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_APP_CORE_HPP
