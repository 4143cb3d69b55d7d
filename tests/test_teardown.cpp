#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// Teardown at every suspension point (Boost.Cobalt's brute-force idea): each scenario is run on a
// borrowed io_context for exactly n handler executions, n = 0, 1, 2, ... until it completes on its
// own; after each prefix the App is either destroyed on the spot or stopped and run to the end.
// Whatever the point, no coroutine frame may be left and every local's destructor must have run.

#include <boost/asio/detached.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using taskyard::App;
using taskyard::Task;

namespace {

/// Counts locals constructed and destroyed in the scenario's coroutines.
struct cleanup_probe {
  static inline int alive = 0;
  test::frame_probe frame;
  cleanup_probe() { ++alive; }
  ~cleanup_probe() { --alive; }
  cleanup_probe(const cleanup_probe&) = delete;
  cleanup_probe& operator=(const cleanup_probe&) = delete;
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// The seed's snippets, as one scenario each.
using scenario = std::function<std::vector<Task<>>(App&)>;

std::vector<Task<>> seed_notify(App& app) {
  return {app.add_task([]() -> asio::awaitable<void> {
    cleanup_probe probe;
    co_await sleep_for(1ms);
  })};
}

std::vector<Task<>> seed_auto_inject(App& app) {
  return {app.add_task([](App& a) -> asio::awaitable<void> {
    cleanup_probe probe;
    co_await sleep_for(1ms);
    (void)a.name();
  })};
}

std::vector<Task<>> seed_named(App& app) {
  Task<> slow = app.add_task(
      []() -> asio::awaitable<void> {
        cleanup_probe probe;
        co_await test::suspend_forever();
      },
      "slow_task");
  Task<> manager = app.add_task([](App& a) -> asio::awaitable<void> {
    cleanup_probe probe;
    co_await test::yield();
    Task<> task = a.get_task("slow_task");
    co_await a.cancel_task("slow_task");
    a.purge_tasks();
    (void)task.cancelled();
  });
  return {slow, manager};
}

std::vector<Task<>> events_and_waits(App& app) {
  std::vector<Task<>> tasks;
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(app.add_task([](App& a) -> asio::awaitable<void> {
      cleanup_probe probe;
      co_await a.event("my.custom.event");
      co_await a.event("my.custom.event", 1h);
    }));
  }
  tasks.push_back(app.add_task([](App& a) -> asio::awaitable<void> {
    cleanup_probe probe;
    for (int round = 0; round < 2; ++round) {
      while (a.event_waiters("my.custom.event") < 3) co_await test::yield();
      a.dispatch("my.custom.event");
    }
  }));
  return tasks;
}

std::vector<Task<>> stubborn_and_nested(App& app) {
  app.config().graceful_shutdown_timeout = 5ms;
  // Not waited for: it never ends by itself; the stop sequence gives up on it.
  app.add_task(
      []() -> asio::awaitable<void> {
        cleanup_probe probe;
        for (;;) {
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error&) {}
          co_await asio::this_coro::reset_cancellation_state();
        }
      },
      "stubborn");
  return {app.add_task([](App& a) -> asio::awaitable<void> {
    cleanup_probe probe;
    Task<int> inner = a.add_task([]() -> asio::awaitable<int> {
      cleanup_probe inner_probe;
      co_await sleep_for(1ms);
      co_return 7;
    });
    (void)co_await inner.wait();
  })};
}

/// Waits for the scenario's tasks, whatever their outcome, then stops the App: the scenario then
/// runs out of work by itself.
asio::awaitable<void> stop_when_done(App& app, std::vector<Task<>> tasks) {
  for (auto& t : tasks) co_await test::wait_error(t);
  app.stop();
}

/// Runs `scenario` on a fresh App for `steps` handler executions, then tears it down.
/// Returns true if the scenario had finished by itself within those steps.
bool run_prefix(const scenario& make, std::size_t steps, bool stop_first) {
  bool finished = false;
  {
    asio::io_context ioc;
    {
      App app{"teardown", ioc};
      app.add_task(stop_when_done(app, make(app)));
      asio::co_spawn(ioc, app.serve(), asio::detached);
      std::size_t ran = 0;
      while (ran < steps && ioc.run_one() != 0) ++ran;
      finished = ran < steps; // ran out of work before the budget
      if (stop_first && !finished) {
        app.stop();
        ioc.restart();
        ioc.run(); // the stop sequence, to its end
      }
    } // ~App
    ioc.restart();
    while (ioc.poll() != 0) {}
  } // ~io_context
  return finished;
}

void check_every_prefix(const scenario& make, bool stop_first) {
  constexpr std::size_t most_steps = 2000; // far more than any scenario here needs
  std::size_t steps = 0;
  for (; steps < most_steps; ++steps) {
    test::live_frames = 0;
    cleanup_probe::alive = 0;
    const bool finished = run_prefix(make, steps, stop_first);
    INFO("teardown after " << steps << " handlers, " << (stop_first ? "stopped" : "destroyed"));
    REQUIRE(test::live_frames == 0);
    REQUIRE(cleanup_probe::alive == 0);
    if (finished) break;
  }
  CHECK(steps < most_steps); // the scenario does complete on its own eventually
}

} // namespace

TEST_CASE("teardown at every suspension point leaves no frame and runs every destructor",
          "[teardown]") {
  const bool stop_first = GENERATE(false, true);
  SECTION("add_task(notify_server_started_after_five_seconds())") {
    check_every_prefix(seed_notify, stop_first);
  }
  SECTION("add_task(auto_inject)") { check_every_prefix(seed_auto_inject, stop_first); }
  SECTION("named tasks: get_task, cancel_task, purge_tasks") {
    check_every_prefix(seed_named, stop_first);
  }
  SECTION("events: waiters, dispatch, timeouts") {
    check_every_prefix(events_and_waits, stop_first);
  }
  SECTION("a task that ignores cancellation, and nested tasks") {
    check_every_prefix(stubborn_and_nested, stop_first);
  }
}

TEST_CASE("an App destroyed before its tasks start gives their gates back to the io_context",
          "[teardown]") {
  // On an io_context that several threads may run, a task takes its gate (and with it its strand)
  // as its start is scheduled. Only a task given up on while running keeps its gate thrown, here
  // each App's lifecycle; the gates of the tasks that never started go back to the pool.
  constexpr std::size_t apps = 100, tasks_per_app = 10;
  {
    asio::io_context ioc;
    const auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
    for (std::size_t i = 0; i < apps; ++i) {
      App app{"gates", ioc};
      asio::co_spawn(ioc, app.serve(), asio::detached);
      ioc.poll(); // the lifecycle runs until it waits for stop()
      for (std::size_t k = 0; k < tasks_per_app; ++k) app.add_task(test::suspend_forever());
    } // destroyed with its tasks scheduled, not started
    CHECK(gates.size() - gates.free_count() == apps);
  }
  CHECK(test::live_frames == 0);
}
