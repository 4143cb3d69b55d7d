#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// The server lifecycle around the tasks: listener order and forms, deferred tasks, stop() and
// signals, failing listeners, serve() on a borrowed io_context, run() on several threads.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <exception>
#include <iterator>
#include <mutex>
#include <semaphore>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;
using strings = std::vector<std::string>;

namespace {

struct listener_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Counts in test::live_frames while it exists (see test_shutdown.cpp).
struct arg_probe {
  arg_probe() { ++test::live_frames; }
  arg_probe(const arg_probe&) { ++test::live_frames; }
  arg_probe& operator=(const arg_probe&) = delete;
  ~arg_probe() { --test::live_frames; }
};

/// Registers one listener of each accepted form on `event`: taking App& or nothing, returning void
/// or an awaitable (the awaitable ones suspend, to show the next listener waits for them).
template <typename Register>
void add_every_form(App& app, strings& seen, const std::string& event, Register reg) {
  reg([&seen, &app, event](App& a) { seen.push_back(event + (&a == &app ? " app&/void" : " ?")); });
  reg([&seen, event] { seen.push_back(event + " ()/void"); });
  reg([&seen, &app, event](App& a) -> asio::awaitable<void> {
    seen.push_back(event + " app&/awaitable begins");
    co_await test::yield();
    seen.push_back(event + (&a == &app ? " app&/awaitable ends" : " ?"));
  });
  reg([&seen, event]() -> asio::awaitable<void> {
    seen.push_back(event + " ()/awaitable begins");
    co_await test::yield();
    seen.push_back(event + " ()/awaitable ends");
  });
}

strings every_form(const std::string& event) {
  return {event + " app&/void",
          event + " ()/void",
          event + " app&/awaitable begins",
          event + " app&/awaitable ends",
          event + " ()/awaitable begins",
          event + " ()/awaitable ends"};
}

/// Records the three stop events of a single-process run into `seen`.
void record_stop_events(App& app, strings& seen) {
  app.before_server_stop([&seen] { seen.push_back("before_server_stop"); });
  app.after_server_stop([&seen] { seen.push_back("after_server_stop"); });
  app.main_process_stop([&seen] { seen.push_back("main_process_stop"); });
}

/// Runs the App on one thread and returns the message of the listener_failure run() rethrows.
std::string run_failure(App& app) {
  try {
    app.run({.threads = 1, .handle_signals = false});
  } catch (const listener_failure& e) {
    return e.what();
  }
  FAIL("run() did not rethrow the listener's exception");
  return {};
}

/// Records each of the six events into `seen`.
void record_events(App& app, strings& seen) {
  app.main_process_start([&seen] { seen.push_back("main_process_start"); });
  app.before_server_start([&seen] { seen.push_back("before_server_start"); });
  app.after_server_start([&seen] { seen.push_back("after_server_start"); });
  record_stop_events(app, seen);
}

const strings all_events{"main_process_start", "before_server_start", "after_server_start",
                         "before_server_stop", "after_server_stop",   "main_process_stop"};

asio::awaitable<void> raise_then_sleep(int sig) {
  co_await test::yield();
  std::raise(sig);
  co_await test::suspend_forever();
}

asio::awaitable<void> count_run(std::atomic<int>& runs) {
  ++runs;
  co_return;
}

asio::awaitable<void> records_run(arg_probe, bool& ran) {
  ran = true;
  co_await test::suspend_forever();
}

} // namespace

TEST_CASE("run() calls the listeners in lifecycle order, each event's in the order added",
          "[lifecycle][listeners]") {
  App app{"order"};
  strings seen;
  add_every_form(app, seen, "main_process_start",
                 [&](auto l) { app.main_process_start(std::move(l)); });
  add_every_form(app, seen, "before_server_start",
                 [&](auto l) { app.before_server_start(std::move(l)); });
  add_every_form(app, seen, "after_server_start",
                 [&](auto l) { app.after_server_start(std::move(l)); });
  add_every_form(app, seen, "before_server_stop",
                 [&](auto l) { app.before_server_stop(std::move(l)); });
  add_every_form(app, seen, "after_server_stop",
                 [&](auto l) { app.after_server_stop(std::move(l)); });
  add_every_form(app, seen, "main_process_stop",
                 [&](auto l) { app.main_process_stop(std::move(l)); });
  // A task added before run: deferred, started after before_server_start; it stops the App.
  Task<> deferred = app.add_task(
      [&seen](App& a) -> asio::awaitable<void> {
        seen.push_back("task");
        a.stop();
        co_return;
      },
      "deferred");

  app.run({.threads = 1, .handle_signals = false});

  CHECK(deferred.done());
  strings expected;
  for (const auto& e : all_events) {
    auto forms = every_form(e);
    expected.insert(expected.end(), forms.begin(), forms.end());
  }
  strings without_task;
  std::copy_if(seen.begin(), seen.end(), std::back_inserter(without_task),
               [](const std::string& s) { return s != "task"; });
  CHECK(without_task == expected);
  // The deferred task ran exactly once, after every before_server_start listener had completed
  // and before the stop sequence began.
  REQUIRE(std::count(seen.begin(), seen.end(), "task") == 1);
  const auto task_at = std::find(seen.begin(), seen.end(), "task") - seen.begin();
  const auto last_before_start =
      std::find(seen.begin(), seen.end(), "before_server_start ()/awaitable ends") - seen.begin();
  const auto first_before_stop =
      std::find(seen.begin(), seen.end(), "before_server_stop app&/void") - seen.begin();
  CHECK(task_at > last_before_start);
  CHECK(task_at < first_before_stop);
}

TEST_CASE("a task added before run has not started when before_server_start runs",
          "[lifecycle][before_run]") {
  App app{"deferred"};
  std::atomic<int> runs{0};
  int invoked = 0;
  int invoked_at_main_process_start = -1, runs_at_main_process_start = -1;
  int invoked_at_before_server_start = -1, runs_at_before_server_start = -1;
  Task<> awaited = app.add_task(count_run(runs), "awaitable");
  Task<> called = app.add_task(
      [&invoked, &runs]() -> asio::awaitable<void> {
        ++invoked;
        ++runs;
        co_return;
      },
      "callable");
  app.main_process_start([&] {
    invoked_at_main_process_start = invoked;
    runs_at_main_process_start = runs;
  });
  app.before_server_start([&]() -> asio::awaitable<void> {
    co_await test::yield(); // even across a suspension, the deferred tasks wait
    invoked_at_before_server_start = invoked;
    runs_at_before_server_start = runs;
  });
  test::run_app(app, [&](App&) -> asio::awaitable<void> {
    co_await awaited.wait();
    co_await called.wait();
  });
  CHECK(invoked_at_main_process_start == 0);
  CHECK(runs_at_main_process_start == 0);
  CHECK(invoked_at_before_server_start == 0);
  CHECK(runs_at_before_server_start == 0);
  CHECK(invoked == 1);
  CHECK(runs == 2);
  CHECK_FALSE(awaited.cancelled());
  CHECK_FALSE(called.cancelled());
}

TEST_CASE("app.stop() from a task ends run() after the full stop sequence", "[lifecycle][stop]") {
  App app{"stop-from-task"};
  strings seen;
  record_events(app, seen);
  Task<> sleeper, stopper;
  app.after_server_start([&](App& a) {
    sleeper = a.add_task(test::suspend_forever(), "sleeper");
    stopper = a.add_task(
        [](App& me) -> asio::awaitable<void> {
          for (int i = 0; i < 3; ++i) co_await test::yield();
          me.stop();
        },
        "stopper");
  });
  app.run({.threads = 1, .handle_signals = false});
  CHECK(seen == all_events);
  CHECK(stopper.done());
  CHECK(sleeper.done());
  CHECK(sleeper.cancelled());
}

TEST_CASE("app.stop() from another thread ends run()", "[lifecycle][stop][threads]") {
  App app{"stop-from-thread"};
  strings seen;
  record_events(app, seen);
  std::binary_semaphore serving{0};
  app.after_server_start([&] { serving.release(); });
  Task<> sleeper;
  app.before_server_start([&](App& a) { sleeper = a.add_task(test::suspend_forever()); });
  std::thread stopper([&] {
    serving.acquire();
    app.stop();
  });
  struct join_guard {
    std::binary_semaphore& s;
    std::thread& t;
    ~join_guard() {
      s.release(); // in case run() failed before after_server_start
      t.join();
    }
  } guard{serving, stopper};
  app.run({.threads = 1, .handle_signals = false});
  CHECK(seen == all_events);
  CHECK(sleeper.cancelled());
}

TEST_CASE("stop() before run() makes run() go through the whole lifecycle and return",
          "[lifecycle][stop]") {
  App app{"stop-first"};
  strings seen;
  record_events(app, seen);
  bool ran = false;
  Task<> deferred = app.add_task(records_run(arg_probe{}, ran), "deferred");
  app.stop();
  app.run({.threads = 1, .handle_signals = false});
  CHECK(seen == all_events);
  CHECK(deferred.done());
  CHECK(deferred.cancelled());
  CHECK(test::live_frames == 0);
}

namespace {

void stops_on_signal(int sig) {
  App app{"signalled"};
  strings seen;
  record_events(app, seen);
  Task<> raiser;
  bool sleeper_done_at_after_server_stop = false;
  app.after_server_start([&](App& a) { raiser = a.add_task(raise_then_sleep(sig), "raiser"); });
  app.after_server_stop([&] { sleeper_done_at_after_server_stop = raiser.done(); });
  app.run(); // default options: handle_signals = true
  CHECK(seen == all_events);
  CHECK(sleeper_done_at_after_server_stop);
  // It was stopped by the signal while it slept, not by finishing.
  CHECK(raiser.cancelled());
}

} // namespace

TEST_CASE("SIGTERM ends run() after the full stop sequence", "[lifecycle][signals]") {
  stops_on_signal(SIGTERM);
}

TEST_CASE("SIGINT ends run() after the full stop sequence", "[lifecycle][signals]") {
  stops_on_signal(SIGINT);
}

TEST_CASE("an App runs its lifecycle once: run() or serve() again throws app_running",
          "[lifecycle][errors]") {
  App app{"once"};
  bool threw_while_running = false;
  app.after_server_start([&](App& a) {
    try {
      a.run();
    } catch (const taskyard::app_running&) {
      threw_while_running = true;
    }
  });
  test::run_app(app, [](App&) -> asio::awaitable<void> { co_return; });
  CHECK(threw_while_running);
  try {
    app.run();
    FAIL("a second run() did not throw");
  } catch (const taskyard::app_running& e) {
    CHECK_THAT(e.what(), Catch::Contains("'once'"));
  }
  std::exception_ptr served_error;
  bool served = false;
  asio::co_spawn(app.io_context(), app.serve(), [&](std::exception_ptr e) {
    served = true;
    served_error = e;
  });
  app.io_context().restart();
  app.io_context().run();
  REQUIRE(served);
  CHECK_THROWS_AS(std::rethrow_exception(served_error), taskyard::app_running);
}

TEST_CASE("a before_server_start listener that throws ends the start, the stop sequence runs and "
          "run() rethrows",
          "[lifecycle][errors]") {
  REQUIRE(test::live_frames == 0);
  App app{"failing-start"};
  strings seen;
  bool ran = false;
  int invoked = 0;
  Task<> awaited = app.add_task(records_run(arg_probe{}, ran), "awaited");
  Task<> called = app.add_task([&invoked, &ran, p = arg_probe{}] {
    ++invoked;
    return records_run(arg_probe{}, ran);
  });
  app.main_process_start([&] { seen.push_back("main_process_start"); });
  app.before_server_start([&] { seen.push_back("before_server_start 1"); });
  app.before_server_start([&]() -> asio::awaitable<void> {
    seen.push_back("before_server_start 2");
    co_await test::yield();
    throw listener_failure("before_server_start 2 failed");
  });
  app.before_server_start([&] { seen.push_back("before_server_start 3"); });
  app.after_server_start([&] { seen.push_back("after_server_start"); });
  record_stop_events(app, seen);

  CHECK(run_failure(app) == "before_server_start 2 failed");
  CHECK(seen == strings{"main_process_start", "before_server_start 1", "before_server_start 2",
                        "before_server_stop", "after_server_stop", "main_process_stop"});
  // The deferred tasks never started: cancelled, callables never invoked, frames gone.
  for (const auto& t : {awaited, called}) {
    CHECK(t.done());
    CHECK(t.cancelled());
    CHECK_FALSE(t.forced());
  }
  CHECK_FALSE(ran);
  CHECK(invoked == 0);
  CHECK(test::live_frames == 0);
  // The App is stopped for good.
  CHECK_THROWS_AS(app.add_task(test::suspend_forever()), taskyard::app_stopped);
}

TEST_CASE("a main_process_start listener that throws: nothing starts, the stop sequence runs",
          "[lifecycle][errors]") {
  App app{"failing-main"};
  strings seen;
  bool ran = false;
  Task<> deferred = app.add_task(records_run(arg_probe{}, ran), "deferred");
  app.main_process_start([&] {
    seen.push_back("main_process_start");
    throw listener_failure("main_process_start failed");
  });
  app.before_server_start([&] { seen.push_back("before_server_start"); });
  app.after_server_start([&] { seen.push_back("after_server_start"); });
  record_stop_events(app, seen);
  CHECK_THROWS_AS(app.run({.threads = 1, .handle_signals = false}), listener_failure);
  // As documented: a start listener that throws ends the start, and the stop sequence runs in full.
  CHECK(seen == strings{"main_process_start", "before_server_stop", "after_server_stop",
                        "main_process_stop"});
  CHECK(deferred.cancelled());
  CHECK_FALSE(ran);
  CHECK(test::live_frames == 0);
}

TEST_CASE("an after_server_start listener that throws: the tasks already started are shut down, "
          "the stop sequence runs and run() rethrows",
          "[lifecycle][errors]") {
  REQUIRE(test::live_frames == 0);
  App app{"failing-after-start"};
  strings seen;
  bool ran = false;
  Task<> deferred = app.add_task(records_run(arg_probe{}, ran), "deferred");
  bool deferred_running_at_failure = false;
  app.after_server_start([&]() -> asio::awaitable<void> {
    seen.push_back("after_server_start 1");
    // The deferred task has started (before after_server_start): wait until it runs.
    while (!ran) co_await test::yield();
    deferred_running_at_failure = !deferred.done();
    throw listener_failure("after_server_start 1 failed");
  });
  app.after_server_start([&] { seen.push_back("after_server_start 2"); });
  record_stop_events(app, seen);
  CHECK(run_failure(app) == "after_server_start 1 failed");
  // The later after_server_start listener is skipped; the stop sequence runs in full, without a
  // stop() from anyone: the failure is the stop.
  CHECK(seen == strings{"after_server_start 1", "before_server_stop", "after_server_stop",
                        "main_process_stop"});
  CHECK(ran);
  CHECK(deferred_running_at_failure);
  CHECK(deferred.done());
  CHECK(deferred.cancelled());
  CHECK_FALSE(deferred.forced());
  CHECK(test::live_frames == 0);
  CHECK_THROWS_AS(app.add_task(test::suspend_forever()), taskyard::app_stopped);
}

TEST_CASE(
    "a stop listener that throws does not prevent the later ones and run() rethrows the first",
    "[lifecycle][errors]") {
  App app{"failing-stop"};
  strings seen;
  Task<> sleeper;
  bool sleeper_done_at_after_server_stop = false;
  app.before_server_stop([&] {
    seen.push_back("before_server_stop 1");
    throw listener_failure("first");
  });
  app.before_server_stop([&]() -> asio::awaitable<void> {
    co_await test::yield();
    seen.push_back("before_server_stop 2");
  });
  app.after_server_stop([&]() -> asio::awaitable<void> {
    seen.push_back("after_server_stop 1");
    sleeper_done_at_after_server_stop = sleeper.done();
    co_await test::yield();
    throw listener_failure("second");
  });
  app.after_server_stop([&] { seen.push_back("after_server_stop 2"); });
  app.main_process_stop([&] { seen.push_back("main_process_stop"); });
  try {
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      sleeper = a.add_task(test::suspend_forever(), "sleeper");
      co_return;
    });
    FAIL("run() did not rethrow the stop listener's exception");
  } catch (const listener_failure& e) {
    CHECK(std::string(e.what()) == "first");
  }
  CHECK(seen == strings{"before_server_stop 1", "before_server_stop 2", "after_server_stop 1",
                        "after_server_stop 2", "main_process_stop"});
  // shutdown_tasks ran between the stop events all the same.
  CHECK(sleeper_done_at_after_server_stop);
  CHECK(sleeper.cancelled());
}

TEST_CASE("serve() runs the lifecycle on a borrowed io_context, without the main-process events",
          "[lifecycle][serve][borrowed]") {
  asio::io_context ioc;
  strings seen;
  bool completed = false;
  std::exception_ptr error;
  Task<> sleeper, deferred;
  bool deferred_ran = false;
  {
    App app{"served", ioc};
    record_events(app, seen);
    deferred = app.add_task(records_run(arg_probe{}, deferred_ran), "deferred");
    app.after_server_start([&](App& a) {
      sleeper = a.add_task(test::suspend_forever(), "sleeper");
      a.add_task(
          [](App& me) -> asio::awaitable<void> {
            co_await test::yield();
            me.stop();
          },
          "stopper");
    });
    asio::co_spawn(ioc, app.serve(), [&](std::exception_ptr e) {
      completed = true;
      error = e;
    });
    ioc.run(); // returns once nothing is left to do: serve() has completed, tasks are shut down
    CHECK(completed);
    CHECK_FALSE(error);
    CHECK(seen == strings{"before_server_start", "after_server_start", "before_server_stop",
                          "after_server_stop"});
    CHECK(sleeper.cancelled());
    CHECK(deferred.cancelled());
    CHECK(deferred_ran);
    CHECK_THROWS_AS(app.add_task(test::suspend_forever()), taskyard::app_stopped);
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("serve() rethrows a listener's exception to its completion handler",
          "[lifecycle][serve][errors]") {
  asio::io_context ioc;
  strings seen;
  std::exception_ptr error;
  {
    App app{"served-failing", ioc};
    app.after_server_start([&] {
      seen.push_back("after_server_start");
      throw listener_failure("after_server_start failed");
    });
    app.before_server_stop([&] { seen.push_back("before_server_stop"); });
    app.after_server_stop([&] { seen.push_back("after_server_stop"); });
    asio::co_spawn(ioc, app.serve(), [&](std::exception_ptr e) { error = e; });
    ioc.run();
  }
  REQUIRE(error);
  CHECK_THROWS_AS(std::rethrow_exception(error), listener_failure);
  CHECK(seen == strings{"after_server_start", "before_server_stop", "after_server_stop"});
}

TEST_CASE("run({.threads = 2}) runs the whole lifecycle with tasks on two threads",
          "[lifecycle][threads]") {
  REQUIRE(test::live_frames == 0);
  App app{"two-threads"};
  strings seen;
  record_events(app, seen);
  constexpr int tasks = 200;
  std::atomic<int> completed{0};
  std::mutex ids_mutex;
  std::set<std::thread::id> ids;
  auto work = [&]() -> asio::awaitable<void> {
    test::frame_probe probe;
    for (int i = 0; i < 5; ++i) {
      {
        std::lock_guard<std::mutex> lock(ids_mutex);
        ids.insert(std::this_thread::get_id());
      }
      co_await test::yield();
    }
    ++completed;
  };
  std::vector<Task<>> handles;
  for (int i = 0; i < 10; ++i)
    handles.push_back(app.add_task(work, "deferred-" + std::to_string(i)));
  app.after_server_start([&](App& a) -> asio::awaitable<void> {
    for (int i = 10; i < tasks; ++i) handles.push_back(a.add_task(work));
    for (const auto& t : handles) co_await t.wait();
    a.stop();
  });
  app.run({.threads = 2});
  CHECK(seen == all_events);
  CHECK(completed == tasks);
  REQUIRE(handles.size() == static_cast<std::size_t>(tasks));
  for (const auto& t : handles) {
    CHECK(t.done());
    CHECK_FALSE(t.cancelled());
    CHECK_FALSE(t.failed());
  }
  CHECK(ids.size() >= 1);
  CHECK(ids.size() <= 2);
  CHECK(test::live_frames == 0);
}
