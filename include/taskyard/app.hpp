//
// taskyard/app.hpp
// ~~~~~~~~~~~~~~~~
//
// taskyard::App: Sanic's app, for what concerns background tasks. It owns or borrows an
// io_context, runs the tasks handed to it, names them, finds them, cancels them, and shuts them
// down cleanly; and it runs the server lifecycle (listeners, run/stop) around them.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_APP_HPP
#define TASKYARD_APP_HPP

#include <taskyard/config.hpp>
#include <taskyard/detail/app_core.hpp>
#include <taskyard/detail/block_cache.hpp>
#include <taskyard/detail/task_state.hpp>
#include <taskyard/detail/worker_processes.hpp>
#include <taskyard/errors.hpp>
#include <taskyard/events.hpp>
#include <taskyard/inject.hpp>
#include <taskyard/registry.hpp>
#include <taskyard/run.hpp>
#include <taskyard/task.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace taskyard {

/// What App::cancel_task does when no task is registered under the name.
enum class missing_task {
  raise,  ///< Throw task_not_found (the default, as Sanic's raise_exception=True).
  ignore, ///< Do nothing and return false (Sanic's raise_exception=False).
};

/// What App::shutdown_tasks did.
struct shutdown_result {
  /// How many unfinished tasks it cancelled.
  std::size_t cancelled = 0;
  /// The names of the tasks that ignored cancellation past the timeout and were given up on (their
  /// frames destroyed without resuming); "<unnamed>" for an unnamed one.
  std::vector<std::string> forced;
};

/// An application that runs background tasks on an io_context: Sanic's `app`.
///
/// Tasks are coroutines (`boost::asio::awaitable<T>`). Each runs on a strand of its own on the
/// App's io_context, so the io_context may be run by any number of threads.
///
/// Lifecycle: tasks added before the App starts are deferred, and started (callables invoked) once
/// it does, after the before_server_start listeners. App::run drives the whole lifecycle on its
/// own; App::serve is the same lifecycle as a coroutine, for a server that runs its io_context
/// itself. Once shutdown has begun no task may be added.
///
/// Thread safety: add_task, get_task, find_task, cancel_task, purge_tasks, tasks, shutdown_tasks,
/// event, dispatch and stop may be called from any thread, concurrently, while the io_context runs
/// on one or many threads, and from inside tasks. Listeners and config() must be set up before the
/// App starts. The destructor must not race with other calls on the App.
///
/// Destruction: destroying an App gives up on every task that has not finished (Task::forced()),
/// so none resumes again, and destroys their coroutine frames: at once if the App owns its
/// io_context; for a borrowed io_context, when that io_context next runs (the operations the tasks
/// wait on are cancelled) or is destroyed. Its own lifecycle stops likewise, and a pending serve()
/// completes with operation_aborted, as an Asio operation does when its I/O object goes. Task
/// handles stay valid and report the final state.
class App {
public:
  using executor_type = boost::asio::io_context::executor_type;

  /// An App with an io_context of its own.
  explicit App(std::string name)
      : owned_(std::make_unique<boost::asio::io_context>()),
        core_(std::make_shared<detail::app_core>(std::move(name), *owned_)) {}

  /// An App on a server's io_context, which must outlive it.
  ///
  /// An io_context constructed for one thread (`asio::io_context ioc{1}`, Asio's concurrency hint
  /// that one thread runs it, or a hint that turns its locking off) runs each task directly on its
  /// executor rather than on a strand of the task's own: faster, and the promise is the
  /// application's to keep. Every member may still be called from any thread.
  App(std::string name, boost::asio::io_context& ioc)
      : core_(std::make_shared<detail::app_core>(std::move(name), ioc)) {}

  App(const App&) = delete;
  App& operator=(const App&) = delete;
  App(App&&) = delete;
  App& operator=(App&&) = delete;

  ~App() {
    core_->close(); // first, so that nothing below resumes the App's own coroutines
    if (lifecycle_) core_->abandon(*lifecycle_);
    for (auto& task : core_->live_tasks()) core_->abandon(*task);
    core_->drop_deferred();
    // Listeners may hold handles and I/O objects: they go before the io_context does.
    for (auto* listeners : {&main_process_start_, &before_server_start_, &after_server_start_,
                            &before_server_stop_, &after_server_stop_, &main_process_stop_})
      listeners->clear();
    owned_.reset(); // destroys every handler, and with them the coroutine frames they own
    core_->clear();
  }

  /// The App's name (Sanic's app.name).
  [[nodiscard]] const std::string& name() const noexcept { return core_->name; }

  /// The io_context the App runs on (Sanic's app.loop).
  [[nodiscard]] boost::asio::io_context& io_context() const noexcept { return core_->ioc; }

  /// The io_context's executor.
  [[nodiscard]] executor_type get_executor() const noexcept { return core_->ioc.get_executor(); }

  /// The App's settings. Not synchronised: change them before the App starts.
  [[nodiscard]] taskyard::config& config() noexcept { return core_->config; }
  [[nodiscard]] const taskyard::config& config() const noexcept { return core_->config; }

  // ---------------------------------------------------------------------------------------------
  // Tasks

  /// Adds an unnamed task and returns its handle. `source` is an `asio::awaitable<T>`, or a
  /// callable invocable as `f(App&)` (the App is injected) or `f()` that returns one; anything else
  /// does not compile (see inject.hpp).
  ///
  /// If the App is running the task is scheduled on its strand, never run inside this call. Before
  /// the App starts, it is deferred: a callable is invoked only when the App starts. An unnamed
  /// task is not listed by tasks(), but the App tracks it like any other, so shutdown cancels it.
  /// A callable is moved (or copied) once, into the task; one whose move may throw is kept in a
  /// box of its own (one allocation more), and moved no more.
  ///
  /// Throws app_stopped once shutdown has begun. Out of memory: either add_task throws
  /// std::bad_alloc and has added nothing, or the task is added, and fails with std::bad_alloc if
  /// it cannot be started. Thread-safe.
  template <typename Source>
  auto add_task(Source&& source) {
    return add(std::forward<Source>(source), std::string{}, name_conflict::error);
  }

  /// Adds a task under a name, by which get_task, find_task and cancel_task find it and tasks()
  /// lists it. Naming a task before the App starts is allowed.
  ///
  /// Throws invalid_task_name if the name is empty; duplicate_task_name if a task that has not
  /// finished holds it, unless `on_conflict` is name_conflict::replace, which cancels that task
  /// (without waiting) and registers this one. A finished task's name may be reused at once.
  /// Out of memory, as the overload above; except that if the task it replaces cannot be
  /// cancelled, this one is still added (and started, or deferred until the App starts), and then
  /// std::bad_alloc is thrown.
  template <typename Source>
  auto add_task(Source&& source, std::string name,
                name_conflict on_conflict = name_conflict::error) {
    if (name.empty()) throw invalid_task_name();
    return add(std::forward<Source>(source), std::move(name), on_conflict);
  }

  /// The task registered under `name`, finished or not. `get_task<T>` returns it typed, and throws
  /// task_type_mismatch if it produces another type. Throws task_not_found if no task is
  /// registered under the name, invalid_task_name if it is empty. Thread-safe.
  template <typename T = void>
  [[nodiscard]] Task<T> get_task(std::string_view name) const {
    auto found = find_task<T>(name);
    if (!found) throw task_not_found(name);
    return std::move(*found);
  }

  /// The task registered under `name`, or nothing (Sanic's get_task(name, raise_exception=False)).
  /// Throws invalid_task_name if the name is empty. Thread-safe.
  template <typename T = void>
  [[nodiscard]] std::optional<Task<T>> find_task(std::string_view name) const {
    if (name.empty()) throw invalid_task_name();
    auto found = core_->registry.find(name);
    if (!found) return std::nullopt;
    if constexpr (std::is_void_v<T>) {
      return found;
    } else {
      if (found->state_->result_type() != typeid(T)) throw task_type_mismatch(name);
      return Task<T>(found->state_);
    }
  }

  /// Cancels the task registered under `name` with an optional message, then waits until it has
  /// finished: a task that catches the cancellation to clean up is waited for. Returns true if a
  /// task was registered under the name (cancelling a finished task does nothing), false if none
  /// was and `on_missing` is missing_task::ignore; otherwise throws task_not_found. The task's own
  /// failure, if it fails, stays on its handle and is not rethrown here.
  ///
  /// A task that cancels itself by name does not wait for itself: the cancellation reaches it at
  /// this very co_await, which throws operation_aborted in it, as at any cancellation point.
  /// Cancelling the caller abandons the wait (it sees operation_aborted); the task stays cancelled.
  boost::asio::awaitable<bool> cancel_task(std::string name, std::string message = {},
                                           missing_task on_missing = missing_task::raise) {
    // use_awaitable starts the operation once the caller has suspended: it may complete in place.
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                       void(std::exception_ptr, bool)>(
        cancel_task_initiation{core_, std::move(name), std::move(message), on_missing, true},
        boost::asio::use_awaitable);
  }

  /// cancel_task as an Asio asynchronous operation, for any completion token: a callback,
  /// asio::detached, asio::use_future, asio::deferred, asio::use_awaitable... Its signature is
  /// `void(std::exception_ptr, bool)`, as co_spawn's: the failure (task_not_found,
  /// invalid_task_name, or a system_error with operation_aborted if the wait was cancelled), and
  /// whether a task was registered under the name. The same contract as cancel_task: the handler
  /// runs once the task has finished.
  ///
  /// What it adds to cancel_task is that the caller need not wait: to cancel many tasks, start an
  /// operation for each, and the cancellations reach them all in one pass of the io_context rather
  /// than one task after another.
  ///
  /// As every Asio operation, it never runs the handler inside this call: the handler runs on its
  /// associated executor (by default the App's io_context), which it keeps busy until then.
  /// Emitting the handler's associated cancellation slot, on that executor, abandons the wait: the
  /// handler gets operation_aborted and the task stays cancelled. Terminal and partial
  /// cancellation do so; total does nothing, since the task's cancellation cannot be undone. The
  /// handler's associated allocator is not used: the wait comes from taskyard's block cache.
  /// Thread-safe.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(std::exception_ptr, bool)) CompletionToken>
  auto async_cancel_task(std::string name, std::string message, missing_task on_missing,
                         CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, bool)>(
        cancel_task_initiation{core_, std::move(name), std::move(message), on_missing, false},
        token);
  }

  /// async_cancel_task with no message, throwing task_not_found (in the handler) if no task is
  /// registered under the name.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(std::exception_ptr, bool)) CompletionToken>
  auto async_cancel_task(std::string name, CompletionToken&& token) {
    return async_cancel_task(std::move(name), {}, missing_task::raise,
                             std::forward<CompletionToken>(token));
  }

  /// Removes every finished (succeeded, failed or cancelled) task from the registry and returns how
  /// many. A failure nobody observed is reported to the exception handler when its task is purged,
  /// unless a handle to it is still held (then when the last one goes). Thread-safe.
  std::size_t purge_tasks() {
    // The registry is the core's, and the exception handler, called as the purge releases a failed
    // task, may destroy the App: the purge keeps the core alive until it returns.
    const auto core = core_;
    return core->registry.purge();
  }

  /// A snapshot of the registered (named) tasks, in registration order (Sanic's app.tasks).
  /// Thread-safe.
  [[nodiscard]] std::vector<Task<>> tasks() const { return core_->registry.snapshot(); }

  /// Shuts every task down, in two phases: cancels every unfinished task, waits until all have
  /// finished or `timeout` has passed, then gives up on those left (Task::forced()): none resumes
  /// again and their frames are destroyed (their destructors run). Returns the count cancelled and
  /// the names of those forced. From the moment it starts, add_task throws app_stopped.
  ///
  /// Event-driven: it wakes when the last task finishes, not on a poll. A forced task whose
  /// operation does not support cancellation keeps its frame until that operation completes or the
  /// io_context is destroyed; shutdown waits config().forced_frame_grace for frames, no longer.
  ///
  /// Must be awaited on the App's io_context. Cancelling the caller abandons the wait.
  boost::asio::awaitable<shutdown_result>
  shutdown_tasks(std::chrono::steady_clock::duration timeout) {
    return shutdown_tasks_in(core_, timeout);
  }

  /// shutdown_tasks with config().graceful_shutdown_timeout (15 s by default).
  boost::asio::awaitable<shutdown_result> shutdown_tasks() {
    return shutdown_tasks(core_->config.graceful_shutdown_timeout);
  }

  // ---------------------------------------------------------------------------------------------
  // Events

  /// Waits for the next dispatch(name) (Sanic's `await app.event(name)`). No registration is
  /// needed. Throws invalid_event_name if the name is empty. Cancellable: a task blocked here is
  /// cancelled at once by cancel_task or shutdown (it sees operation_aborted). Thread-safe.
  boost::asio::awaitable<void> event(std::string name) { return event_in(core_, std::move(name)); }

  /// As event(name), but throws event_timeout if no dispatch comes within `timeout`.
  boost::asio::awaitable<void> event(std::string name,
                                     std::chrono::steady_clock::duration timeout) {
    return event_in(core_, std::move(name), timeout);
  }

  /// Wakes every coroutine waiting on event(name) at this moment, and no later one; returns how
  /// many it woke. Never resumes them inside this call. Throws invalid_event_name if the name is
  /// empty. Thread-safe.
  std::size_t dispatch(std::string_view name) { return core_->events.dispatch(name); }

  /// How many coroutines wait on event(name) now (for introspection and tests). Thread-safe.
  [[nodiscard]] std::size_t event_waiters(std::string_view name) const {
    return core_->events.waiting(name);
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  /// Listeners: each is invocable as `l(App&)` or `l()` and returns void or asio::awaitable<void>.
  /// Listeners of one event run one after another, in the order they were added. Add them before
  /// the App starts (not thread-safe).
  ///
  /// Order: main_process_start, before_server_start, (tasks added before the start are started),
  /// after_server_start, ... serve until stop() or SIGINT/SIGTERM ..., before_server_stop,
  /// shutdown_tasks(config().graceful_shutdown_timeout), after_server_stop, main_process_stop.
  ///
  /// A start listener that throws ends the start: the rest of it is skipped (deferred tasks not yet
  /// started never start) and the stop sequence runs in full. Every stop listener runs even if an
  /// earlier one threw. run() (or serve()) then rethrows the first exception.
  template <typename L>
  void main_process_start(L&& l) {
    main_process_start_.push_back(make_listener(std::forward<L>(l)));
  }
  template <typename L>
  void before_server_start(L&& l) {
    before_server_start_.push_back(make_listener(std::forward<L>(l)));
  }
  template <typename L>
  void after_server_start(L&& l) {
    after_server_start_.push_back(make_listener(std::forward<L>(l)));
  }
  template <typename L>
  void before_server_stop(L&& l) {
    before_server_stop_.push_back(make_listener(std::forward<L>(l)));
  }
  template <typename L>
  void after_server_stop(L&& l) {
    after_server_stop_.push_back(make_listener(std::forward<L>(l)));
  }
  template <typename L>
  void main_process_stop(L&& l) {
    main_process_stop_.push_back(make_listener(std::forward<L>(l)));
  }

  /// Runs the whole lifecycle (see the listeners) and returns once it is over: after stop() or,
  /// with `options.handle_signals`, SIGINT or SIGTERM. Throws app_running if the App has already
  /// been started, invalid_run_options for workers = 0, for workers > 1 without signals, or for
  /// threads > 1 on an io_context made for one thread (see App(name, ioc)).
  ///
  /// With `options.workers` = 1 (the default) everything runs in the calling process, on
  /// `options.threads` threads including the caller's. The io_context is stopped on return, and
  /// the first exception a listener threw is rethrown.
  ///
  /// With workers = N > 1, as Sanic runs workers:
  /// - The calling process (the main process) runs the main_process_start listeners on the calling
  ///   thread, and waits until every task they added (and every task those added) has finished.
  /// - It forks N workers, with io_context::notify_fork around each fork. Before each fork it
  ///   checks that it runs no other thread (a fork copies only the calling thread: mutexes held by
  ///   the others would stay locked forever in the workers), counted in /proc/self/task where /proc
  ///   is mounted; if it does, it throws taskyard::error naming the count, after its stop
  ///   sequence. Work pending on the io_context at the fork that is not a task (an armed timer, a
  ///   detached coroutine, an acceptor's wait) is copied into every worker and goes on there, as in
  ///   any pre-forking server; it does not go on in the main process. Worker i (see
  ///   worker_index()) runs its own lifecycle on `options.threads` threads: before_server_start,
  ///   the tasks added before run() (callables invoked there, so once per worker),
  ///   after_server_start, serving until stop() or SIGINT/SIGTERM, then before_server_stop,
  ///   shutdown_tasks and after_server_stop. Each worker has its own registry, a copy of the main
  ///   process's as it was before run(): the tasks added in main_process_start are not in it. A
  ///   worker then exits (with _exit: destructors of objects outside the App do not run in it) with
  ///   status 0, or 1 if a listener threw (reported on stderr).
  /// - The main process forwards SIGINT and SIGTERM to the workers as SIGTERM and waits for all of
  ///   them. A worker that stops on its own (stop() inside it) leaves the others running. A worker
  ///   that dies (killed by a signal, or a non-zero exit status) is reported on stderr with its
  ///   index and cause, and the others are stopped in order (SIGTERM): no restart, since what
  ///   killed one would likely kill its replacement; a process supervisor restarts the server.
  ///   stop_all() in a worker stops them all. A worker whose main process dies is sent SIGTERM
  ///   (Linux), so none is left behind.
  /// - Once all have exited, the main process shuts down its own tasks and runs the
  ///   main_process_stop listeners, then returns how each worker ended (run_result::clean()).
  ///   The tasks added before run() do not run in the main process: they are cancelled there
  ///   and removed from its registry once the workers are forked.
  ///
  /// A stop(), SIGINT or SIGTERM before the workers are forked (during main_process_start, say)
  /// forks none; the tasks main_process_start added are then cancelled by the main process's
  /// shutdown. SIGINT and SIGTERM that arrive while main_process_stop runs are ignored. If run()
  /// throws after the workers were forked (a fork failed, or main_process_stop threw), every
  /// worker has been stopped and reaped, and one that did not stop cleanly is reported on stderr.
  run_result run(run_options options = {}) {
    if (options.workers == 0) throw invalid_run_options("workers must be at least 1");
    if (options.workers > 1 && !options.handle_signals)
      throw invalid_run_options("workers > 1 needs handle_signals: the main process stops its "
                                "workers with SIGTERM");
    if (options.threads > 1 && detail::runs_on_one_thread(core_->ioc))
      throw invalid_run_options("threads > 1 on an io_context made for one thread (concurrency "
                                "hint 1): its tasks have no strands");
    core_->begin();
    if (options.workers == 1) {
      worker_index_.store(0);
      run_lifecycle(options, true, nullptr);
      return {};
    }
    return run_workers(options);
  }

  /// The lifecycle without the main-process listeners and without signal handling, as a coroutine,
  /// for a server that runs its io_context itself: `co_spawn(ioc, app.serve(), detached)`.
  /// Completes once the stop sequence is over, rethrowing the first exception a listener threw.
  /// Throws app_running if the App has already started. Cancelling it stops the App, as stop()
  /// does, and stops waiting for the stop sequence (which goes on).
  boost::asio::awaitable<void> serve() { return serve_in(core_, this); }

  /// Asks the App to stop serving: the stop sequence begins. Tasks may still be added until
  /// shutdown_tasks starts. Thread-safe, idempotent; before the App starts, it will stop as soon as
  /// it has started. In a worker process it stops that worker only.
  void stop() { core_->request_stop(); }

  /// Stops the whole server: in a worker of a multi-worker run, asks the main process to stop
  /// every worker (it sends the main process SIGTERM, which it forwards to them all) and stops this
  /// one; anywhere else, the same as stop(). Thread-safe, idempotent.
  void stop_all() {
    // Only while the main process is this worker's parent: once it is gone its pid may be reused.
    if (const pid_t main_pid = main_pid_.load(); main_pid != 0 && ::getppid() == main_pid)
      ::kill(main_pid, SIGTERM);
    stop();
  }

  /// This process's worker index, like Sanic's worker name: 0 to workers - 1 in a worker process of
  /// a multi-worker run, 0 in a single-process run (or serve()); nothing in the main process of a
  /// multi-worker run, and before the App starts. Thread-safe.
  [[nodiscard]] std::optional<std::size_t> worker_index() const noexcept {
    const std::size_t i = worker_index_.load();
    if (i == no_worker) return std::nullopt;
    return i;
  }

private:
  using listener = std::function<boost::asio::awaitable<void>(App&)>;

  template <typename Source>
  auto add(Source&& source, std::string name, name_conflict on_conflict) {
    detail::check_task_source<Source>();
    if constexpr (task_source<Source>) {
      using T = task_result_t<Source>;
      auto state = std::allocate_shared<detail::task_state<T>>(
          detail::cached_allocator<detail::task_state<T>>(), std::move(name), core_,
          core_->ioc.get_executor());
      Task<T> handle(state);
      core_->admit(state, on_conflict,
                   [&gates = core_->gates, state,
                    factory = detail::coroutine_factory(
                        make_factory(std::forward<Source>(source)))]() mutable {
                     detail::start_task(gates, std::move(state), std::move(factory));
                   });
      return handle;
    }
  }

  /// Turns what add_task accepts into a nullary callable returning the awaitable, invoked once
  /// inside the task's own coroutine. On its way there it is moved several times (into the start,
  /// into Asio's operation and out of it, into the coroutine's frame), where a throw could no
  /// longer make add_task fail cleanly: a callable whose move may throw is moved once, here, into
  /// a box of its own, and the box is moved from then on.
  template <typename Source>
  auto make_factory(Source&& source) {
    using S = std::decay_t<Source>;
    if constexpr (is_awaitable_v<S>) {
      return [a = S(std::forward<Source>(source))]() mutable { return std::move(a); };
    } else {
      auto held = detail::hold<S>(std::forward<Source>(source));
      if constexpr (injects_app<S>) {
        return
            [this, f = std::move(held)]() mutable { return std::invoke(detail::held(f), *this); };
      } else {
        return [f = std::move(held)]() mutable { return std::invoke(detail::held(f)); };
      }
    }
  }

  template <typename L>
  static listener make_listener(L&& l) {
    using F = std::decay_t<L>;
    if constexpr (std::invocable<F&, App&>) {
      return [f = F(std::forward<L>(l))](App& app) { return call_listener(f, app); };
    } else if constexpr (std::invocable<F&>) {
      return [f = F(std::forward<L>(l))](App&) { return call_listener(f); };
    } else {
      static_assert(std::invocable<F&>,
                    "taskyard: a listener must be invocable as l(taskyard::App&) or l(), and "
                    "return void or asio::awaitable<void>");
    }
  }

  // The callable is copied into the coroutine frame, so a lambda's captures live as long as it
  // runs.
  template <typename F, typename... Args>
  static boost::asio::awaitable<void> call_listener(F f, Args&... args) {
    using R = std::invoke_result_t<F&, Args&...>;
    static_assert(std::is_void_v<R> || std::is_same_v<R, boost::asio::awaitable<void>>,
                  "taskyard: a listener must return void or asio::awaitable<void>");
    if constexpr (std::is_void_v<R>) {
      std::invoke(f, args...);
    } else {
      co_await std::invoke(f, args...);
    }
  }

  /// Runs a start event's listeners in order; the first exception ends it.
  boost::asio::awaitable<void> run_listeners(const std::vector<listener>& listeners) {
    const auto copy = listeners; // a listener may add listeners
    for (const auto& l : copy) co_await l(*this);
  }

  /// Runs a stop event's listeners in order; all run, and the first exception is kept in `error`.
  boost::asio::awaitable<void> run_stop_listeners(const std::vector<listener>& listeners,
                                                  std::exception_ptr& error) {
    const auto copy = listeners;
    for (const auto& l : copy) {
      try {
        co_await l(*this);
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
  }

  // The public coroutines hand over to these, which capture the core when they are called, not when
  // they first run: whoever spawned them may resume them after the App is gone, and then only the
  // core, which outlives it, is touched.

  /// Completes cancel_task's handler once the cancelled task has finished, or with
  /// operation_aborted if the caller is cancelled first; with the handler's executor (or else the
  /// io_context's) and cancellation slot, which the wait uses. Keeps the task's state, whose mutex
  /// the wait's cancellation handler takes, alive until the wait has completed.
  template <typename Handler>
  struct finished_waiter {
    Handler handler;
    std::shared_ptr<detail::task_state_base> task;
    boost::asio::io_context::executor_type fallback; // for a handler without an executor

    using executor_type =
        boost::asio::associated_executor_t<Handler, boost::asio::io_context::executor_type>;
    executor_type get_executor() const noexcept {
      return boost::asio::get_associated_executor(handler, fallback);
    }
    using cancellation_slot_type = boost::asio::associated_cancellation_slot_t<Handler>;
    cancellation_slot_type get_cancellation_slot() const noexcept {
      return boost::asio::get_associated_cancellation_slot(handler);
    }
    // Not total: the task's cancellation, requested before the wait, stands.
    static constexpr boost::asio::cancellation_type_t accepted_cancellation =
        boost::asio::cancellation_type::terminal | boost::asio::cancellation_type::partial;

    void operator()(boost::system::error_code ec) {
      // The wait's cancellation handler is gone: the state goes first, so that the caller, which
      // resumes in there, sees its last reference go (a purge reports an unobserved failure).
      task.reset();
      std::move(handler)(ec ? std::make_exception_ptr(boost::system::system_error(ec)) : nullptr,
                         true);
    }
  };

  /// What cancel_task does once awaited, and async_cancel_task once called: an operation rather
  /// than a coroutine of its own, so that awaiting it makes one coroutine frame (use_awaitable's)
  /// where a coroutine would add another. Completes with the failure to throw, if any, and whether
  /// a task was found.
  struct cancel_task_initiation {
    std::shared_ptr<detail::app_core> core;
    std::string name;
    std::string message;
    missing_task on_missing;
    bool caller_suspended; // the handler may run inside the initiation (see cancel_task)

    template <typename Handler>
    void operator()(Handler handler) {
      std::exception_ptr failure;
      bool found = false;
      std::shared_ptr<detail::task_state_base> unfinished; // its only reference here
      try {
        if (name.empty()) throw invalid_task_name();
        if (auto task = core->registry.find(name)) {
          found = true;
          task->state_->request_cancel(std::move(message));
          if (!task->state_->finished()) unfinished = task->state_;
        } else if (on_missing == missing_task::raise) {
          throw task_not_found(name);
        }
      } catch (...) {
        failure = std::current_exception();
      }
      if (unfinished) {
        // Outside the try: the handler is moved into the wait, whatever the wait throws.
        auto& state = *unfinished;
        state.async_wait_finished(finished_waiter<Handler>{
            std::move(handler), std::move(unfinished), core->ioc.get_executor()});
        return;
      }
      // Done at once. cancel_task's caller resumes in place, as it did when cancel_task was a
      // coroutine, but within a bound, since a loop of such calls would resume it ever deeper on
      // the stack. This initiation lives in the frame that resumption destroys: nothing of it is
      // used after. Any other handler is posted, as Asio's rules for an operation require.
      auto ex = boost::asio::get_associated_executor(handler, core->ioc.get_executor());
      auto complete = [h = std::move(handler), failure, found]() mutable {
        std::move(h)(failure, found);
      };
      if (caller_suspended)
        detail::wait_list::dispatch_bounded(ex, std::move(complete));
      else
        boost::asio::post(ex, std::move(complete));
    }
  };

  static boost::asio::awaitable<shutdown_result>
  shutdown_tasks_in(std::shared_ptr<detail::app_core> core,
                    std::chrono::steady_clock::duration timeout) {
    using namespace boost::asio::experimental::awaitable_operators;
    core->set_phase_at_least(detail::app_phase::draining);
    core->drop_deferred();
    shutdown_result result;
    for (auto& task : core->live_tasks())
      if (Task<>(task).cancel()) ++result.cancelled;

    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, timeout);
    co_await (
        detail::app_core::wait_until(core, [&core] { return core->live_count_locked() == 0; }) ||
        timer.async_wait(boost::asio::use_awaitable));

    auto left = core->live_tasks();
    if (!left.empty()) {
      for (auto& task : left) {
        // A task that finishes as it is given up on keeps its outcome, and is not reported.
        if (core->abandon(*task))
          result.forced.push_back(task->name().empty() ? "<unnamed>" : task->name());
      }
      timer.expires_after(core->config.forced_frame_grace);
      co_await (detail::app_core::wait_until(
                    core, [&core] { return core->abandoned_frames_locked() == 0; }) ||
                timer.async_wait(boost::asio::use_awaitable));
    }
    co_return result;
  }

  static boost::asio::awaitable<void> event_in(std::shared_ptr<detail::app_core> core,
                                               std::string name) {
    try {
      co_await core->events.async_wait(name, boost::asio::use_awaitable);
    } catch (...) {
      core->events.prune(name);
      throw;
    }
  }

  static boost::asio::awaitable<void> event_in(std::shared_ptr<detail::app_core> core,
                                               std::string name,
                                               std::chrono::steady_clock::duration timeout) {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, timeout);
    std::size_t first = 0;
    try {
      first = (co_await (core->events.async_wait(name, boost::asio::use_awaitable) ||
                         timer.async_wait(boost::asio::use_awaitable)))
                  .index();
    } catch (...) {
      core->events.prune(name);
      throw;
    }
    if (first == 1) {
      core->events.prune(name);
      throw event_timeout(name);
    }
  }

  static boost::asio::awaitable<void> serve_in(std::shared_ptr<detail::app_core> core, App* app) {
    if (core->closed())
      throw boost::system::system_error(boost::asio::error::operation_aborted,
                                        "taskyard: the App was destroyed before serve() ran");
    core->begin();
    app->worker_index_.store(0);
    auto lifecycle = app->start_lifecycle(false); // the last use of the App itself
    try {
      co_await lifecycle->async_wait_finished(boost::asio::use_awaitable);
    } catch (const boost::system::system_error&) {
      core->request_stop();
      throw;
    }
    lifecycle->rethrow_outcome();
  }

  /// Starts the lifecycle as an internal task: on a strand of its own as any task (unless one
  /// thread runs the io_context) and behind a switch of its own, so that once the App is destroyed
  /// nothing of it runs again, whatever it was waiting for.
  std::shared_ptr<detail::task_state<void>> start_lifecycle(bool main_process) {
    lifecycle_ = std::make_shared<detail::task_state<void>>(
        "lifecycle of app '" + core_->name + "'", core_, core_->ioc.get_executor());
    detail::start_task(core_->gates, lifecycle_, detail::coroutine_factory([this, main_process] {
                         return lifecycle(main_process);
                       }));
    return lifecycle_;
  }

  boost::asio::awaitable<void> lifecycle(bool main_process) {
    std::exception_ptr error;
    try {
      if (main_process) co_await run_listeners(main_process_start_);
      co_await run_listeners(before_server_start_);
      core_->start_deferred();
      co_await run_listeners(after_server_start_);
      auto core = core_;
      co_await detail::app_core::wait_until(
          core, [&core] { return core->stop_requested_locked(); }, detail::app_core::wake_on::stop);
    } catch (...) {
      error = std::current_exception();
    }
    co_await run_stop_listeners(before_server_stop_, error);
    auto report = co_await shutdown_tasks(core_->config.graceful_shutdown_timeout);
    if (!report.forced.empty()) {
      std::cerr << "taskyard: app '" << core_->name << "' gave up on " << report.forced.size()
                << " task(s) that ignored cancellation at shutdown:";
      for (const auto& n : report.forced) std::cerr << ' ' << n;
      std::cerr << '\n';
    }
    co_await run_stop_listeners(after_server_stop_, error);
    if (main_process) co_await run_stop_listeners(main_process_stop_, error);
    core_->set_phase_at_least(detail::app_phase::stopped);
    if (error) std::rethrow_exception(error);
  }

  /// The lifecycle on this process's io_context, on `options.threads` threads. A worker passes the
  /// signals it inherited, restored once its own handlers are in place.
  void run_lifecycle(const run_options& options, bool main_process,
                     detail::supervisor_signals* inherited) {
    auto& ioc = core_->ioc;
    if (ioc.stopped()) ioc.restart();
    std::optional<boost::asio::signal_set> signals;
    if (options.handle_signals) {
      signals.emplace(ioc, SIGINT, SIGTERM);
      signals->async_wait([this](const boost::system::error_code& ec, int) {
        if (!ec) stop();
      });
    }
    std::optional<detail::block_stop_signals_on_exit> block_on_exit; // goes before `signals`
    if (inherited != nullptr) {
      block_on_exit.emplace();
      inherited->restore();
    }
    auto lifecycle = start_lifecycle(main_process);
    // Nothing of this frame is captured: the wait may outlive run() if the io_context is stopped
    // from elsewhere. The signal_set is cancelled as it goes out of scope.
    lifecycle->async_wait_finished([&ioc](const boost::system::error_code&) { ioc.stop(); });
    run_on_threads(ioc, options.threads == 0 ? 1 : options.threads);
    if (auto failure = lifecycle->take_failure()) std::rethrow_exception(failure);
  }

  using task_set = std::set<const detail::task_state_base*>;

  /// run() with workers > 1, in the main process (see run()).
  run_result run_workers(const run_options& options) {
    auto& ioc = core_->ioc;
    task_set before_run; // the tasks added before run(): theirs to run is the workers'
    for (const auto& t : core_->live_tasks()) before_run.insert(t.get());

    // While main_process_start runs, SIGINT and SIGTERM stop the App, as in a single process: no
    // worker is forked then.
    std::optional<boost::asio::signal_set> start_signals;
    start_signals.emplace(ioc, SIGINT, SIGTERM);
    start_signals->async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) stop();
    });
    std::exception_ptr error;
    run_here([this, &before_run] { return main_start(before_run); }, error);

    // From here on the main process takes its signals with sigwaitinfo (see supervisor_signals).
    detail::supervisor_signals signals;
    ioc.restart();
    ioc.poll(); // a signal that came just before they were blocked
    start_signals.reset();
    ioc.poll(); // the cancelled wait: nothing of it is left to copy into the workers
    if (signals.take_stop_signal()) stop();

    run_result result;
    if (!error && !core_->stop_requested()) {
      detail::worker_supervisor supervisor(core_->name, signals, options.workers);
      const pid_t main_pid = ::getpid();
      try {
        for (std::size_t i = 0; i < options.workers; ++i) {
          const pid_t pid = detail::fork_process(ioc, core_->name);
          if (pid == 0) run_worker(i, main_pid, options, signals, before_run);
          supervisor.add(i, pid);
        }
      } catch (...) {
        error = std::current_exception();
        supervisor.stop_all();
      }
      core_->drop_deferred();
      forget_tasks(
          [&before_run](const detail::task_state_base* t) { return before_run.count(t) != 0; });
      try {
        result.workers = supervisor.wait_all();
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    run_here([this, &error] { return main_stop(error); }, error);
    if (error) std::rethrow_exception(error);
    return result;
  }

  /// The main process's start: main_process_start, then every task it added (and every task those
  /// added), to the end, unless the App is asked to stop meanwhile.
  boost::asio::awaitable<void> main_start(const task_set& before_run) {
    co_await run_listeners(main_process_start_);
    auto core = core_;
    co_await detail::app_core::wait_until(core, [&core, &before_run] {
      return core->stop_requested_locked() ||
             core->count_live_locked([&before_run](const detail::task_state_base& t) {
               return before_run.count(&t) == 0;
             }) == 0;
    });
  }

  /// The main process's stop: its own tasks shut down, then main_process_stop.
  boost::asio::awaitable<void> main_stop(std::exception_ptr& error) {
    co_await shutdown_tasks_in(core_, core_->config.graceful_shutdown_timeout);
    co_await run_stop_listeners(main_process_stop_, error);
    core_->set_phase_at_least(detail::app_phase::stopped);
  }

  /// Runs a coroutine of the main process to its end on the calling thread; its exception goes to
  /// `error` unless one is there already.
  template <typename MakeCoroutine>
  void run_here(MakeCoroutine make, std::exception_ptr& error) {
    auto& ioc = core_->ioc;
    ioc.restart();
    auto outcome = std::make_shared<std::optional<std::exception_ptr>>();
    boost::asio::co_spawn(ioc, make(), [outcome, &ioc](std::exception_ptr e) {
      *outcome = std::move(e);
      ioc.stop();
    });
    ioc.run();
    std::exception_ptr e;
    if (!outcome->has_value())
      e = std::make_exception_ptr(
          taskyard::error("taskyard: the io_context of app '" + core_->name +
                          "' was stopped while its main process was starting or stopping"));
    else
      e = **outcome;
    if (e && !error) error = e;
  }

  /// In a freshly forked worker: becomes worker `index`, runs its lifecycle, and exits.
  [[noreturn]] void run_worker(std::size_t index, pid_t main_pid, const run_options& options,
                               detail::supervisor_signals& signals, const task_set& before_run) {
    int status = EXIT_SUCCESS;
    try {
      worker_index_.store(index);
      main_pid_.store(main_pid);
      if (!detail::watch_main_process(main_pid)) stop(); // the main process is gone already
      // The main process's own tasks (all finished) are not this worker's.
      forget_tasks(
          [&before_run](const detail::task_state_base* t) { return before_run.count(t) == 0; });
      run_lifecycle(options, false, &signals);
    } catch (const std::exception& e) {
      status = EXIT_FAILURE;
      std::cerr << "taskyard: app '" << core_->name << "': worker " << index << ": " << e.what()
                << '\n';
    } catch (...) {
      status = EXIT_FAILURE;
      std::cerr << "taskyard: app '" << core_->name << "': worker " << index
                << ": unknown exception\n";
    }
    detail::flush_output();
    ::_exit(status);
  }

  /// Removes from this process the tasks for which `belongs_elsewhere` holds: those added before
  /// run() in the main process (once their starts are dropped), the main process's own tasks in a
  /// worker. Each is cancelled if it has not started, unregistered, and its failure (if any) left
  /// to the process it belongs to.
  template <typename Pred>
  void forget_tasks(Pred belongs_elsewhere) {
    std::vector<std::shared_ptr<detail::task_state_base>> gone;
    for (auto& t : core_->live_tasks())
      if (belongs_elsewhere(t.get())) gone.push_back(std::move(t));
    for (const auto& t : core_->registry.snapshot())
      if (belongs_elsewhere(t.state_.get())) gone.push_back(t.state_);
    for (const auto& t : gone) {
      (void)t->take_failure();
      t->request_cancel({});
      if (!t->name().empty()) core_->registry.erase(Task<>(t));
    }
  }

  static void run_on_threads(boost::asio::io_context& ioc, std::size_t threads) {
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(threads);
    pool.reserve(threads - 1);
    for (std::size_t i = 1; i < threads; ++i) {
      pool.emplace_back([&ioc, &errors, i] {
        try {
          ioc.run();
        } catch (...) {
          errors[i] = std::current_exception();
          ioc.stop();
        }
      });
    }
    try {
      ioc.run();
    } catch (...) {
      errors[0] = std::current_exception();
      ioc.stop();
    }
    for (auto& t : pool) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

  std::unique_ptr<boost::asio::io_context> owned_;
  std::shared_ptr<detail::app_core> core_;
  std::shared_ptr<detail::task_state<void>> lifecycle_;
  static constexpr std::size_t no_worker = static_cast<std::size_t>(-1);
  std::atomic<std::size_t> worker_index_{no_worker};
  std::atomic<pid_t> main_pid_{0}; // in a worker process: the main process, for stop_all()
  std::vector<listener> main_process_start_, before_server_start_, after_server_start_,
      before_server_stop_, after_server_stop_, main_process_stop_;
};

} // namespace taskyard

#endif // TASKYARD_APP_HPP
