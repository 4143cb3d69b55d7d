#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// shutdown_tasks: two-phase, event-driven shutdown; tasks that ignore cancellation are given up on
// and their frames destroyed; destroying an App (owned or borrowed io_context, run or not) never
// leaks a coroutine frame and never resumes a task afterwards.

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using taskyard::App;
using taskyard::Task;

namespace {

/// Counts its own destruction: a local of a task coroutine, to see that its frame was unwound.
struct on_destroy {
  explicit on_destroy(std::atomic<int>& c) : count(c) {}
  on_destroy(const on_destroy&) = delete;
  on_destroy& operator=(const on_destroy&) = delete;
  ~on_destroy() { ++count; }
  std::atomic<int>& count;
};

/// Counts in test::live_frames while it exists. Passed by value to a coroutine (or captured by a
/// callable) it lives in a frame that never started, or in a factory that was never invoked.
struct arg_probe {
  arg_probe() { ++test::live_frames; }
  arg_probe(const arg_probe&) { ++test::live_frames; }
  arg_probe& operator=(const arg_probe&) = delete;
  ~arg_probe() { --test::live_frames; }
};

/// What the tasks of one test report.
struct task_log {
  std::atomic<int> started{0};
  std::atomic<int> aborts_caught{0};     // cancellations a task caught and ignored
  std::atomic<int> locals_destroyed{0};  // on_destroy locals unwound
  std::atomic<int> cleanups_finished{0}; // asynchronous clean-ups run to their end
  std::atomic<int> resumed{0};           // resumptions after a suspension point
};

/// Waits for `n` notifications.
asio::awaitable<void> wait_for(test::signal& s, int n) {
  for (int i = 0; i < n; ++i) co_await s.wait();
}

/// Honours cancellation: suspends until cancelled, and lets operation_aborted end it.
asio::awaitable<void> cooperative(task_log& log, test::signal& started) {
  test::frame_probe probe;
  on_destroy local{log.locals_destroyed};
  ++log.started;
  started.notify();
  co_await test::suspend_forever();
  ++log.resumed; // never: suspend_forever only ends by throwing
}

/// Ignores cancellation: catches operation_aborted, resets its cancellation state and suspends
/// again, forever. Only being given up on ends it.
asio::awaitable<void> stubborn(task_log& log, test::signal& started) {
  test::frame_probe probe;
  on_destroy local{log.locals_destroyed};
  ++log.started;
  started.notify();
  for (;;) {
    try {
      co_await test::suspend_forever();
    } catch (const boost::system::system_error& e) {
      if (!test::is_aborted(e)) throw;
      ++log.aborts_caught;
    }
    ++log.resumed;
    co_await asio::this_coro::reset_cancellation_state();
  }
}

/// Waits on an operation that does not support cancellation (its handler has no cancellation slot)
/// and never completes: only destroying the io_context ends it.
asio::awaitable<void> shielded(task_log& log, test::signal& started) {
  test::frame_probe probe;
  on_destroy local{log.locals_destroyed};
  ++log.started;
  started.notify();
  asio::steady_timer never(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  boost::system::error_code ec;
  co_await never.async_wait(asio::bind_cancellation_slot(
      asio::cancellation_slot(), asio::redirect_error(asio::use_awaitable, ec)));
  ++log.resumed;
}

/// A task body that records whether it ever ran; its argument lives in its frame.
asio::awaitable<void> records_run(arg_probe, std::atomic<bool>& ran) {
  test::frame_probe probe;
  ran = true;
  co_await test::suspend_forever();
}

asio::awaitable<int> one() { co_return 1; }

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

} // namespace

TEST_CASE("shutdown_tasks cancels every task that honours cancellation and forces none",
          "[shutdown]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  std::atomic<bool> late_ran{false};
  {
    App app{"cooperative"};
    test::signal started{app.io_context()};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      std::vector<Task<>> running{
          a.add_task(cooperative(log, started), "one"),
          a.add_task(cooperative(log, started), "two"),
          a.add_task(cooperative(log, started)),                              // unnamed awaitable
          a.add_task([&log, &started] { return cooperative(log, started); }), // unnamed callable
      };
      Task<int> finished = a.add_task(one(), "finished-before");
      co_await wait_for(started, 4);
      CHECK(co_await finished.wait() == 1);
      // Scheduled but not started yet when shutdown begins: cancelled at once, never runs.
      Task<> late = a.add_task(records_run(arg_probe{}, late_ran), "late");

      taskyard::shutdown_result result = co_await a.shutdown_tasks(1h);

      CHECK(result.cancelled == 5); // the four running and the late one; not the finished one
      CHECK(result.forced.empty());
      for (const auto& t : running) {
        CHECK(t.done());
        CHECK(t.cancelled());
        CHECK_FALSE(t.forced());
        CHECK_FALSE(t.failed());
        CHECK_THROWS_AS(t.result(), boost::system::system_error);
      }
      CHECK(late.done());
      CHECK(late.cancelled());
      CHECK_FALSE(late.forced());
      CHECK_FALSE(late_ran);
      CHECK(finished.done());
      CHECK_FALSE(finished.cancelled());
      CHECK(finished.result() == 1);
      CHECK(log.locals_destroyed == 4);
      CHECK(log.resumed == 0);
      CHECK(test::live_frames == 0); // right after shutdown_tasks returns
    });
  }
  CHECK(log.started == 4);
  CHECK(test::live_frames == 0);
}

TEST_CASE("shutdown_tasks gives up on tasks that ignore cancellation past the timeout",
          "[shutdown][forced]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  {
    App app{"stubborn"};
    test::signal started{app.io_context()};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      Task<> s1 = a.add_task(stubborn(log, started), "stubborn-1");
      Task<> anonymous = a.add_task([&log, &started] { return stubborn(log, started); });
      Task<> s2 = a.add_task(stubborn(log, started), "stubborn-2");
      Task<> polite = a.add_task(cooperative(log, started), "polite");
      co_await wait_for(started, 4);
      // Someone waiting for a stubborn task (not a task itself) is woken when it is given up on.
      bool watcher_woken = false, watcher_saw_abort = false;
      asio::co_spawn(
          a.get_executor(),
          [&]() -> asio::awaitable<void> {
            try {
              co_await s1.wait();
            } catch (const boost::system::system_error& e) {
              watcher_saw_abort = test::is_aborted(e);
            }
            watcher_woken = true;
          },
          asio::detached);

      taskyard::shutdown_result result = co_await a.shutdown_tasks(300ms);

      CHECK(result.cancelled == 4);
      CHECK(sorted(result.forced) ==
            std::vector<std::string>{"<unnamed>", "stubborn-1", "stubborn-2"});
      for (const auto& t : {s1, anonymous, s2}) {
        CHECK(t.done());
        CHECK(t.cancelled());
        CHECK(t.forced());
        CHECK_FALSE(t.failed());
        CHECK_THROWS_AS(t.result(), boost::system::system_error);
      }
      CHECK(polite.done());
      CHECK(polite.cancelled());
      CHECK_FALSE(polite.forced());
      // Their frames are gone, and with them their locals, right after shutdown_tasks returns.
      CHECK(test::live_frames == 0);
      CHECK(log.locals_destroyed == 4);
      // Each stubborn task saw the first cancellation and ignored it; being given up on never
      // resumed it.
      CHECK(log.aborts_caught == 3);
      CHECK(log.resumed == 3);
      for (int i = 0; i < 10; ++i) co_await test::yield();
      CHECK(log.resumed == 3);
      CHECK(watcher_woken);
      CHECK(watcher_saw_abort);
      // Given up on, but finished: still registered until purged.
      CHECK(a.tasks().size() == 3);
      CHECK(a.purge_tasks() == 3);
    });
  }
  CHECK(log.started == 4);
  CHECK(test::live_frames == 0);
}

TEST_CASE("shutdown_tasks waits for a task that cleans up asynchronously after cancellation",
          "[shutdown]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  std::atomic<int> rejected_during_cleanup{0};
  std::counting_semaphore<16> cleaning{0};
  {
    App app{"cleanup"};
    test::signal started{app.io_context()};
    test::signal release{app.io_context()};
    // Ends the clean-ups from another thread, each once it has begun: shutdown_tasks must wait for
    // an event it knows nothing about.
    std::thread releaser([&] {
      for (int i = 0; i < 2; ++i) {
        cleaning.acquire();
        release.notify();
      }
    });
    struct join_guard {
      std::counting_semaphore<16>& s;
      std::thread& t;
      ~join_guard() {
        s.release(2); // unblocks the releaser if a test failure left it waiting
        t.join();
      }
    } guard{cleaning, releaser};

    auto slow_cleanup = [&](App& a, bool rethrow) -> asio::awaitable<void> {
      test::frame_probe probe;
      on_destroy local{log.locals_destroyed};
      started.notify();
      bool aborted = false;
      try {
        co_await test::suspend_forever();
      } catch (const boost::system::system_error& e) {
        if (!test::is_aborted(e)) throw;
        aborted = true;
      }
      co_await asio::this_coro::reset_cancellation_state();
      // Shutdown has begun: no task may be added any more, not even by a task.
      try {
        a.add_task(one());
      } catch (const taskyard::app_stopped&) {
        ++rejected_during_cleanup;
      }
      cleaning.release();
      co_await release.wait();
      for (int i = 0; i < 20; ++i) co_await test::yield();
      ++log.cleanups_finished;
      if (rethrow && aborted) throw boost::system::system_error(asio::error::operation_aborted);
    };

    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      Task<> returns = a.add_task(std::bind_front(slow_cleanup, std::ref(a), false), "returns");
      Task<> rethrows = a.add_task(std::bind_front(slow_cleanup, std::ref(a), true), "rethrows");
      co_await wait_for(started, 2);

      taskyard::shutdown_result result = co_await a.shutdown_tasks(1h);

      CHECK(result.cancelled == 2);
      CHECK(result.forced.empty());
      CHECK(log.cleanups_finished == 2);
      CHECK(rejected_during_cleanup == 2);
      for (const auto& t : {returns, rethrows}) {
        CHECK(t.done());
        CHECK(t.cancelled()); // returning after cancellation was requested counts as cancelled
        CHECK_FALSE(t.forced());
        CHECK_FALSE(t.failed());
      }
      CHECK(log.locals_destroyed == 2);
      CHECK(test::live_frames == 0);
    });
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("once shutdown_tasks has begun, add_task throws app_stopped and keeps nothing",
          "[shutdown][errors]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  std::atomic<bool> ran{false};
  int invoked = 0;
  {
    App app{"closed"};
    test::signal started{app.io_context()};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      Task<> t = a.add_task(cooperative(log, started), "before");
      co_await started.wait();
      co_await a.shutdown_tasks(1h);
      // Still inside after_server_start: it is shutdown_tasks, not stop(), that closes the App.
      CHECK_THROWS_AS(a.add_task(records_run(arg_probe{}, ran)), taskyard::app_stopped);
      CHECK_THROWS_AS(a.add_task(records_run(arg_probe{}, ran), "named"), taskyard::app_stopped);
      CHECK_THROWS_AS(a.add_task([&invoked, p = arg_probe{}] {
        ++invoked;
        return one();
      }),
                      taskyard::app_stopped);
      // A finished task's name is free, but the App is closed all the same.
      CHECK_THROWS_AS(a.add_task(one(), "before"), taskyard::app_stopped);
      CHECK(a.find_task("named") == std::nullopt);
      CHECK(a.tasks().size() == 1);
      CHECK(t.cancelled());
      // What the refused calls were given is destroyed, unstarted.
      CHECK(test::live_frames == 0);
      for (int i = 0; i < 5; ++i) co_await test::yield();
      CHECK_FALSE(ran);
      CHECK(invoked == 0);
    });
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("shutdown wakes as soon as the last task has finished, whatever the timeout",
          "[shutdown][events]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  {
    App app{"event-driven"};
    // The stop sequence of run() waits this long at most; cooperative tasks make it return at once.
    app.config().graceful_shutdown_timeout = 24h;
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      // No task at all: nothing to wait for.
      taskyard::shutdown_result none = co_await a.shutdown_tasks(24h);
      CHECK(none.cancelled == 0);
      CHECK(none.forced.empty());
      co_return;
    });
  }
  {
    App app{"event-driven-2"};
    app.config().graceful_shutdown_timeout = 24h;
    test::signal started{app.io_context()};
    std::vector<Task<>> tasks;
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      for (int i = 0; i < 100; ++i) tasks.push_back(a.add_task(cooperative(log, started)));
      co_await wait_for(started, 100);
      // Returns when the last of them has finished, not when 24 hours have passed (the ctest
      // timeout would fail the test long before).
      taskyard::shutdown_result result = co_await a.shutdown_tasks(24h);
      CHECK(result.cancelled == 100);
      CHECK(result.forced.empty());
      CHECK(test::live_frames == 0);
    });
    for (const auto& t : tasks) CHECK(t.cancelled());
  }
  {
    // And run()'s own stop sequence, with tasks still running when stop() is called.
    App app{"event-driven-3"};
    app.config().graceful_shutdown_timeout = 24h;
    test::signal started{app.io_context()};
    std::vector<Task<>> tasks;
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      for (int i = 0; i < 100; ++i) tasks.push_back(a.add_task(cooperative(log, started)));
      co_await wait_for(started, 100);
    });
    for (const auto& t : tasks) {
      CHECK(t.cancelled());
      CHECK_FALSE(t.forced());
    }
  }
  CHECK(log.locals_destroyed == 200);
  CHECK(test::live_frames == 0);
}

TEST_CASE("run()'s stop sequence gives up on a task that ignores cancellation past "
          "graceful_shutdown_timeout",
          "[shutdown][forced][lifecycle]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  Task<> ignoring, polite;
  bool forced_before_after_server_stop = false;
  int frames_at_after_server_stop = -1;
  {
    App app{"graceful"};
    app.config().graceful_shutdown_timeout = 300ms;
    test::signal started{app.io_context()};
    app.after_server_stop([&] {
      forced_before_after_server_stop = ignoring.forced();
      frames_at_after_server_stop = test::live_frames;
    });
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      ignoring = a.add_task(stubborn(log, started), "ignoring");
      polite = a.add_task(cooperative(log, started), "polite");
      co_await wait_for(started, 2);
    });
    // run() has returned.
    CHECK(ignoring.done());
    CHECK(ignoring.cancelled());
    CHECK(ignoring.forced());
    CHECK(polite.cancelled());
    CHECK_FALSE(polite.forced());
    CHECK(forced_before_after_server_stop);
    CHECK(frames_at_after_server_stop == 0);
    CHECK(log.aborts_caught == 1);
    CHECK(log.locals_destroyed == 2);
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("an App that owns its io_context, destroyed after run() forced tasks, leaves no frame",
          "[shutdown][forced][destroy]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  Task<> ignoring, uncancellable;
  {
    App app{"owned-forced"};
    app.config().graceful_shutdown_timeout = 100ms;
    app.config().forced_frame_grace = 20ms;
    test::signal started{app.io_context()};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      ignoring = a.add_task(stubborn(log, started), "ignoring");
      uncancellable = a.add_task(shielded(log, started), "uncancellable");
      co_await wait_for(started, 2);
    });
    CHECK(ignoring.forced());
    CHECK(uncancellable.forced());
    CHECK(uncancellable.cancelled());
    // The operation the shielded task waits on cannot be cancelled: its frame is documented to live
    // until the io_context is destroyed.
    CHECK(test::live_frames == 1);
    CHECK(log.locals_destroyed == 1);
  } // the App, and its io_context, are destroyed
  CHECK(test::live_frames == 0);
  CHECK(log.locals_destroyed == 2);
  CHECK(log.resumed == 1);  // the stubborn one after its first cancellation; nothing after forcing
  CHECK(ignoring.forced()); // handles outlive the App and keep the final state
  CHECK(uncancellable.forced());
}

TEST_CASE("an App destroyed without ever running leaves no frame and invokes no callable",
          "[shutdown][destroy]") {
  REQUIRE(test::live_frames == 0);
  std::atomic<bool> ran{false};
  int invoked = 0;
  std::vector<Task<>> handles;
  SECTION("owning its io_context") {
    App app{"never-run"};
    handles.push_back(app.add_task(records_run(arg_probe{}, ran)));
    handles.push_back(app.add_task(records_run(arg_probe{}, ran), "awaitable"));
    handles.push_back(app.add_task([&invoked, &ran, p = arg_probe{}] {
      ++invoked;
      return records_run(arg_probe{}, ran);
    }));
    handles.push_back(app.add_task(
        [&invoked, &ran, p = arg_probe{}](App&) {
          ++invoked;
          return records_run(arg_probe{}, ran);
        },
        "callable"));
    CHECK(test::live_frames > 0); // the probes are held, unstarted, until the App goes
  }
  SECTION("on a borrowed io_context that never runs") {
    asio::io_context ioc;
    {
      App app{"never-run-borrowed", ioc};
      handles.push_back(app.add_task(records_run(arg_probe{}, ran), "awaitable"));
      handles.push_back(app.add_task([&invoked, &ran, p = arg_probe{}](App&) {
        ++invoked;
        return records_run(arg_probe{}, ran);
      }));
    }
    // Nothing ever started: nothing waits for the io_context.
    CHECK(test::live_frames == 0);
  }
  CHECK(test::live_frames == 0);
  CHECK_FALSE(ran);
  CHECK(invoked == 0);
  for (const auto& t : handles) {
    CHECK(t.done());
    CHECK(t.cancelled());
  }
}

TEST_CASE("an App that owns its io_context, destroyed while its tasks are suspended, leaves no "
          "frame and resumes none",
          "[shutdown][destroy]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  std::atomic<bool> late_ran{false};
  std::vector<Task<>> handles;
  {
    App app{"owned-mid-flight"};
    test::signal started{app.io_context()};
    handles.push_back(app.add_task(cooperative(log, started), "deferred"));
    app.after_server_start([&](App& a) {
      handles.push_back(a.add_task(stubborn(log, started), "stubborn"));
      handles.push_back(a.add_task(cooperative(log, started)));
      handles.push_back(a.add_task(shielded(log, started)));
    });
    asio::co_spawn(app.io_context(), app.serve(), asio::detached);
    while (log.started < 4 && app.io_context().run_one() != 0) {}
    REQUIRE(log.started == 4);
    // Scheduled, not yet started.
    handles.push_back(app.add_task(records_run(arg_probe{}, late_ran), "late"));
    for (const auto& t : handles) CHECK_FALSE(t.done());
  }
  CHECK(test::live_frames == 0);
  CHECK(log.locals_destroyed == 4);
  CHECK(log.resumed == 0);
  CHECK_FALSE(late_ran);
  for (const auto& t : handles) {
    CHECK(t.done());
    CHECK(t.cancelled());
    CHECK(t.forced());
  }
}

TEST_CASE("an App on a borrowed io_context, destroyed while its tasks are suspended, leaves no "
          "frame and resumes none",
          "[shutdown][destroy][borrowed]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  std::atomic<bool> late_ran{false};
  std::vector<Task<>> handles;
  const bool run_again = GENERATE(true, false);
  CAPTURE(run_again);
  {
    asio::io_context ioc;
    {
      App app{"borrowed", ioc};
      test::signal started{ioc};
      handles.push_back(app.add_task(cooperative(log, started), "deferred"));
      handles.push_back(app.add_task([&](App&) { return stubborn(log, started); }, "deferred-2"));
      app.after_server_start([&](App& a) {
        handles.push_back(a.add_task(stubborn(log, started), "stubborn"));
        handles.push_back(a.add_task(cooperative(log, started)));
      });
      asio::co_spawn(ioc, app.serve(), asio::detached);
      while (log.started < 4 && ioc.run_one() != 0) {}
      REQUIRE(log.started == 4);
      handles.push_back(app.add_task(records_run(arg_probe{}, late_ran), "late"));
      for (const auto& t : handles) CHECK_FALSE(t.done());
    } // the App goes while its tasks, and serve(), are suspended
    for (const auto& t : handles) {
      CHECK(t.done());
      CHECK(t.cancelled());
      CHECK(t.forced());
    }
    if (run_again) {
      // Runs what is ready, without blocking: the operations the tasks wait on are cancelled and
      // their frames destroyed, and nothing is left waiting (a hang here would be a leak too).
      ioc.restart();
      while (ioc.poll() != 0) {}
      CHECK(ioc.stopped()); // out of work
      CHECK(test::live_frames == 0);
      CHECK(log.locals_destroyed == 4);
    }
  } // the io_context goes
  CHECK(test::live_frames == 0);
  CHECK(log.locals_destroyed == 4);
  CHECK(log.resumed == 0);
  CHECK(log.aborts_caught == 0);
  CHECK_FALSE(late_ran);
}

namespace {

// Listeners that capture nothing (so that one run through a destroyed App is counted here rather
// than crashing on a dangling capture), counting what runs once the App is gone.
std::atomic<int> listeners_after_destruction{0};
std::atomic<bool> app_destroyed{false};
void count_if_destroyed() {
  if (app_destroyed) ++listeners_after_destruction;
}

/// Room for an App whose bytes stay allocated after it is destroyed: what runs through a destroyed
/// App reads its stale members (instead of memory reused by something else) and is seen.
struct app_storage {
  alignas(App) std::byte bytes[sizeof(App)];
};

} // namespace

TEST_CASE("an App on a borrowed io_context destroyed after stop(), before serve() resumed, runs "
          "nothing afterwards",
          "[shutdown][destroy][borrowed]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  listeners_after_destruction = 0;
  app_destroyed = false;
  // As for any Asio I/O object destroyed with an operation pending, serve() completes with
  // operation_aborted once its App is gone, and runs nothing of the App's on the way.
  bool serve_aborted_after_destruction = false;
  Task<> task;
  {
    asio::io_context ioc;
    auto storage = std::make_unique<app_storage>();
    {
      App* app = new (storage->bytes) App("stopped-then-destroyed", ioc);
      test::signal started{ioc};
      app->before_server_stop([] { count_if_destroyed(); });
      app->after_server_stop([] { count_if_destroyed(); });
      app->after_server_start([&](App& a) { task = a.add_task(cooperative(log, started)); });
      asio::co_spawn(ioc, app->serve(), [&](std::exception_ptr e) {
        serve_aborted_after_destruction = app_destroyed && e && test::is_aborted(e);
      });
      while (log.started < 1 && ioc.run_one() != 0) {}
      REQUIRE(log.started == 1);
      app->stop(); // serve() is woken: its resumption is queued on the io_context
      app->~App(); // and the App goes before the io_context runs again
      app_destroyed = true;
    }
    CHECK(task.forced());
    ioc.restart();
    while (ioc.poll() != 0) {}
    // The App's lifecycle must not go on once the App is gone: its listeners, its members and
    // `this` are gone with it (AddressSanitizer reports the use after scope, if it does).
    CHECK(listeners_after_destruction == 0);
    CHECK(serve_aborted_after_destruction);
    CHECK(ioc.stopped());
    CHECK(test::live_frames == 0);
  }
  CHECK(test::live_frames == 0);
  CHECK(log.resumed == 0);
}

TEST_CASE("an App on a borrowed io_context destroyed during its stop sequence leaves nothing "
          "behind in the io_context",
          "[shutdown][destroy][borrowed]") {
  REQUIRE(test::live_frames == 0);
  task_log log;
  listeners_after_destruction = 0;
  app_destroyed = false;
  // As for any Asio I/O object destroyed with an operation pending, serve() completes with
  // operation_aborted once its App is gone, and runs nothing of the App's on the way.
  bool serve_aborted_after_destruction = false;
  Task<> task;
  {
    asio::io_context ioc;
    {
      std::optional<App> app;
      app.emplace("destroyed-while-stopping", ioc);
      app->config().graceful_shutdown_timeout = std::chrono::hours(24);
      test::signal started{ioc};
      bool stopping = false;
      app->before_server_stop([&] { stopping = true; });
      app->after_server_stop([] { count_if_destroyed(); });
      app->after_server_start([&](App& a) { task = a.add_task(stubborn(log, started)); });
      asio::co_spawn(ioc, app->serve(), [&](std::exception_ptr e) {
        serve_aborted_after_destruction = app_destroyed && e && test::is_aborted(e);
      });
      while (log.started < 1 && ioc.run_one() != 0) {}
      REQUIRE(log.started == 1);
      app->stop();
      // Into the stop sequence: shutdown_tasks cancels the task, which ignores it and waits again.
      while (log.aborts_caught < 1 && ioc.run_one() != 0) {}
      REQUIRE(stopping);
      REQUIRE(log.aborts_caught == 1);
      app.reset(); // while shutdown_tasks waits (24 hours at most) for the task
      app_destroyed = true;
    }
    CHECK(task.forced());
    ioc.restart();
    while (ioc.poll() != 0) {}
    CHECK(listeners_after_destruction == 0);
    CHECK(serve_aborted_after_destruction);
    CHECK(test::live_frames == 0);
    // Nothing of the App's is left waiting in the io_context, its 24-hour shutdown timer included:
    // otherwise the server's ioc.run() cannot return for up to graceful_shutdown_timeout.
    CHECK(ioc.stopped());
  }
  CHECK(test::live_frames == 0);
  CHECK(log.resumed == 1);
}

TEST_CASE(
    "a task whose coroutine has ended as shutdown gives up on it keeps its outcome and is not "
    "reported forced",
    "[shutdown]") {
  // The race, made deterministic on the task's state: shutdown gives up on tasks that have
  // returned or thrown, but whose completion (which settles them, on their own thread) has not run.
  using taskyard::detail::task_state;
  using taskyard::detail::task_status;
  asio::io_context ioc{1};
  auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
  auto threw = std::make_shared<task_state<void>>("threw", nullptr, ioc.get_executor());
  auto returned = std::make_shared<task_state<void>>("returned", nullptr, ioc.get_executor());
  auto suspended = std::make_shared<task_state<void>>("suspended", nullptr, ioc.get_executor());
  for (const auto& state : {threw, returned, suspended})
    REQUIRE(state->begin_running(gates).valid());
  const std::size_t free_switches = gates.free_count();
  threw->end(std::make_exception_ptr(std::runtime_error("failed as shutdown came")), false);
  returned->end(nullptr, false);
  for (const auto& state : {threw, returned, suspended}) state->abandon_gate();

  CHECK_FALSE(threw->abandon());
  CHECK(threw->status() == task_status::failed);
  CHECK_FALSE(threw->forced());
  CHECK(threw->take_failure() != nullptr);

  CHECK_FALSE(returned->abandon());
  CHECK(returned->status() == task_status::succeeded);
  CHECK_FALSE(returned->forced());

  CHECK(suspended->abandon());
  CHECK(suspended->status() == task_status::cancelled);
  CHECK(suspended->forced());

  // The switches of the tasks that had ended go back with their completions, not before: until
  // then co_spawn may still use the cancellation signal that comes with a switch. The thrown one
  // never goes back.
  CHECK(gates.free_count() == free_switches);
  // A completion that runs after all changes nothing else.
  CHECK(threw->settle(nullptr) == nullptr);
  CHECK(threw->status() == task_status::failed);
  CHECK(returned->settle(nullptr) == nullptr);
  CHECK(gates.free_count() == free_switches + 2);
  CHECK(suspended->settle(nullptr) == nullptr);
  CHECK(gates.free_count() == free_switches + 2);
}
