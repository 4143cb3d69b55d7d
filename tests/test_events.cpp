#include <taskyard/events.hpp>

#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// app.event(name) / app.dispatch(name): a dispatch wakes the coroutines waiting at that moment and
// no later one, says how many it woke, and a wait can time out or be cancelled. Waiters are counted
// with event_waiters(), so the tests wait for the state they need instead of sleeping.

#include <boost/asio/detached.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using taskyard::App;
using taskyard::Task;

namespace {

/// Yields until `n` coroutines wait on `name`.
asio::awaitable<void> until_waiting(App& app, std::string_view name, std::size_t n) {
  while (app.event_waiters(name) < n) co_await test::yield();
}

asio::awaitable<int> wait_then(App& app, std::string name, int value) {
  co_await app.event(std::move(name));
  co_return value;
}

} // namespace

TEST_CASE("dispatch wakes every current waiter, returns how many, and wakes no later one",
          "[events]") {
  App app{"events"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    std::vector<Task<int>> first{a.add_task(wait_then(a, "my.custom.event", 1)),
                                 a.add_task(wait_then(a, "my.custom.event", 2)),
                                 a.add_task(wait_then(a, "my.custom.event", 3))};
    Task<int> other = a.add_task(wait_then(a, "another.event", 9));
    co_await until_waiting(a, "my.custom.event", 3);
    co_await until_waiting(a, "another.event", 1);

    const std::size_t woken = a.dispatch("my.custom.event");
    CHECK(woken == 3);
    int sum = 0;
    for (auto& t : first) sum += co_await t.wait();
    CHECK(sum == 6);
    CHECK_FALSE(other.done()); // another name is untouched

    // A waiter that arrives after the dispatch waits for the next one.
    Task<int> later = a.add_task(wait_then(a, "my.custom.event", 4));
    co_await until_waiting(a, "my.custom.event", 1);
    CHECK_FALSE(later.done());
    const std::size_t woken_again = a.dispatch("my.custom.event");
    CHECK(woken_again == 1);
    const int later_value = co_await later.wait();
    CHECK(later_value == 4);

    const std::size_t nobody = a.dispatch("nobody.listens");
    CHECK(nobody == 0);
    other.cancel();
  });
}

TEST_CASE("an event wait with a timeout throws event_timeout when no dispatch comes",
          "[events][timeout]") {
  App app{"timeout"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    std::string message;
    try {
      co_await a.event("never.dispatched", 5ms);
    } catch (const taskyard::event_timeout& e) {
      message = e.what();
      CHECK(e.name() == "never.dispatched");
    }
    CHECK_THAT(message, Catch::Contains("never.dispatched"));
    CHECK(a.event_waiters("never.dispatched") == 0); // the timed-out wait is forgotten

    // With a dispatch in time, the wait returns normally.
    Task<> waiter = a.add_task(
        [](App& me) -> asio::awaitable<void> { co_await me.event("soon", std::chrono::hours(1)); });
    co_await until_waiting(a, "soon", 1);
    const std::size_t woken = a.dispatch("soon");
    CHECK(woken == 1);
    co_await waiter.wait();
    CHECK(waiter.done());
    CHECK_FALSE(waiter.failed());
  });
}

TEST_CASE("a task blocked in event is cancelled promptly by cancel_task and by shutdown",
          "[events][cancel]") {
  test::live_frames = 0;
  App app{"cancel-waiting"};
  Task<> left_for_shutdown;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    auto waiter = [](App& me) -> asio::awaitable<void> {
      test::frame_probe probe;
      co_await me.event("my.custom.event");
    };
    Task<> named = a.add_task(waiter, "waiter");
    left_for_shutdown = a.add_task(waiter);
    co_await until_waiting(a, "my.custom.event", 2);

    co_await a.cancel_task("waiter");
    CHECK(named.cancelled());
    CHECK(a.event_waiters("my.custom.event") == 1);
  });
  CHECK(left_for_shutdown.cancelled());
  CHECK_FALSE(left_for_shutdown.forced()); // it honoured the cancellation
  CHECK(app.event_waiters("my.custom.event") == 0);
  CHECK(test::live_frames == 0);
}

TEST_CASE("dispatch from a foreign thread wakes the waiters on the io_context",
          "[events][threads]") {
  App app{"foreign-dispatch"};
  std::atomic<std::size_t> woken{0};
  std::vector<Task<int>> waiters;
  test::run_app(app,
                [&](App& a) -> asio::awaitable<void> {
                  for (int i = 0; i < 4; ++i)
                    waiters.push_back(a.add_task(wait_then(a, "from.afar", i)));
                  std::thread dispatcher([&a, &woken] {
                    while (a.event_waiters("from.afar") < 4) std::this_thread::yield();
                    woken = a.dispatch("from.afar");
                  });
                  for (auto& t : waiters) co_await t.wait();
                  dispatcher.join();
                },
                {.threads = 2, .handle_signals = false});
  CHECK(woken == 4);
  for (auto& t : waiters) CHECK(t.done());
  CHECK(waiters[3].result() == 3);
}

TEST_CASE("an empty event name is a clear error and disturbs no waiter", "[events][errors]") {
  App app{"empty-event"};
  try {
    (void)app.dispatch("");
    FAIL("dispatch(\"\") did not throw");
  } catch (const taskyard::invalid_event_name& e) {
    CHECK_THAT(e.what(), Catch::Contains("must not be empty"));
  }
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> waiter = a.add_task(wait_then(a, "real.event", 7));
    co_await until_waiting(a, "real.event", 1);
    bool threw = false;
    try {
      co_await a.event("");
    } catch (const taskyard::invalid_event_name&) {
      threw = true;
    }
    CHECK(threw);
    bool timed_threw = false;
    try {
      co_await a.event("", 1h);
    } catch (const taskyard::invalid_event_name&) {
      timed_threw = true;
    }
    CHECK(timed_threw);
    CHECK_THROWS_AS(a.dispatch(""), taskyard::invalid_event_name); // while running too
    // Nothing was lost: the real waiter still waits, and the next dispatch wakes it.
    CHECK_FALSE(waiter.done());
    CHECK(a.event_waiters("real.event") == 1);
    const std::size_t woken = a.dispatch("real.event");
    CHECK(woken == 1);
    const int value = co_await waiter.wait();
    CHECK(value == 7);
  });
}

TEST_CASE("destroying an App with tasks waiting on events destroys their frames",
          "[events][destroy]") {
  test::live_frames = 0;
  bool resumed = false;
  {
    asio::io_context ioc;
    {
      App app{"destroyed-waiting", ioc};
      app.add_task([&resumed](App& me) -> asio::awaitable<void> {
        test::frame_probe probe;
        co_await me.event("never");
        resumed = true;
      });
      asio::co_spawn(ioc, app.serve(), asio::detached);
      while (app.event_waiters("never") < 1 && ioc.run_one() != 0) {}
      REQUIRE(app.event_waiters("never") == 1);
    } // the App goes while its task waits on the event
    ioc.restart();
    while (ioc.poll() != 0) {}
    CHECK(ioc.stopped()); // nothing left waiting
    CHECK(test::live_frames == 0);
  }
  CHECK_FALSE(resumed);
  CHECK(test::live_frames == 0);
}
