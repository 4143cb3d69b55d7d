#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// An io_context made for one thread (`io_context{1}`) runs tasks without a strand each: the same
// behaviour as on a strand, including from other threads, cancellation, forced shutdown and the
// App's destruction.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

asio::awaitable<int> answer() {
  co_await test::yield();
  co_return 42;
}

asio::awaitable<void> sleeps_until_cancelled(bool& cleaned_up) {
  test::frame_probe probe;
  try {
    co_await test::suspend_forever();
  } catch (const boost::system::system_error&) {
    cleaned_up = true;
    throw;
  }
}

asio::awaitable<void> ignores_cancellation() {
  test::frame_probe probe;
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  for (;;) {
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
    co_await asio::this_coro::reset_cancellation_state();
  }
}

/// Yields once, then, as it ends, queues "next turn" on `ioc`: that runs on the io_context's next
/// turn, after whatever the task's end runs in place.
asio::awaitable<void> ends_after_a_turn(asio::io_context& ioc, std::vector<std::string>& order) {
  co_await test::yield();
  asio::post(ioc, [&order] { order.push_back("next turn"); });
}

constexpr std::size_t chain_depth = taskyard::detail::wait_list::max_in_place_depth;
constexpr std::size_t chain_length = 3 * chain_depth;

/// Adds a chain of tasks, the first ending after a turn (ends_after_a_turn) and each of the others
/// awaiting the one before and recording its index, then waits for the last.
asio::awaitable<void> chain(App& app, std::vector<std::string>& order) {
  asio::io_context& ioc = app.io_context();
  std::vector<Task<>> tasks;
  tasks.push_back(app.add_task(ends_after_a_turn(ioc, order)));
  for (std::size_t i = 1; i < chain_length; ++i) {
    tasks.push_back(app.add_task([&order, i, before = tasks.back()]() -> asio::awaitable<void> {
      co_await before.wait();
      order.push_back(std::to_string(i));
    }));
  }
  co_await tasks.back().wait();
}

/// Tasks 1 to chain_depth ended inside the first task's completion, nested; the rest were posted.
void check_chain(const std::vector<std::string>& order) {
  REQUIRE(order.size() == chain_length);
  CHECK(order[chain_depth] == "next turn");
  CHECK(order[chain_depth - 1] == std::to_string(chain_depth));
  CHECK(order.back() == std::to_string(chain_length - 1));
}

} // namespace

TEST_CASE("tasks on an io_context made for one thread run on its executor, with no strand",
          "[one_thread]") {
  asio::io_context ioc{1};
  bool cleaned_up = false;
  bool ran_on_executor = false;
  bool was_cancelled = false;
  int value = 0;
  Task<int> answer_task;
  Task<> sleeper;
  {
    App app{"one-thread", ioc};
    answer_task = app.add_task(answer(), "answer");
    sleeper = app.add_task(sleeps_until_cancelled(cleaned_up), "sleeper");
    app.add_task(
        [&](App& a) -> asio::awaitable<void> {
          auto ex = co_await asio::this_coro::executor;
          // The io_context's executor behind the task's switch, not a strand.
          const auto* task_ex = ex.target<taskyard::detail::task_state_base::executor_type>();
          ran_on_executor = task_ex != nullptr && !task_ex->on_strand();
          value = co_await a.get_task<int>("answer").wait();
          was_cancelled = co_await a.cancel_task("sleeper", "enough");
          a.stop();
        },
        "driver");
    asio::co_spawn(ioc, app.serve(), asio::detached);
    ioc.run();
  }
  CHECK(ran_on_executor);
  CHECK(value == 42);
  CHECK(answer_task.result() == 42);
  CHECK(was_cancelled);
  CHECK(sleeper.cancelled());
  CHECK(sleeper.cancel_message() == "enough");
  CHECK(cleaned_up);
  CHECK(test::live_frames == 0);
}

TEST_CASE("on an io_context made for one thread, add_task never runs a task inline",
          "[one_thread]") {
  asio::io_context ioc{1};
  std::vector<std::string> order;
  {
    App app{"one-thread-order", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      auto child = a.add_task([&]() -> asio::awaitable<void> {
        order.push_back("child");
        co_return;
      });
      order.push_back("after add_task");
      co_await child.wait();
    });
  }
  CHECK(order == std::vector<std::string>{"after add_task", "child"});
}

TEST_CASE("on an io_context made for one thread, other threads add, find and cancel tasks",
          "[one_thread][threads]") {
  asio::io_context ioc{1};
  constexpr int per_thread = 200;
  std::atomic<int> added{0};
  std::vector<Task<>> handles[2];
  std::vector<std::thread> threads;
  {
    App app{"one-thread-foreign", ioc};
    test::signal all_added(ioc);
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&, t] {
          for (int i = 0; i < per_thread; ++i) {
            std::string name(1, static_cast<char>('a' + t));
            name += std::to_string(i);
            handles[t].push_back(a.add_task(test::suspend_forever(), name));
            a.find_task(name)->cancel("from thread");
            if (++added == 2 * per_thread) all_added.notify();
          }
        });
      }
      co_await all_added.wait();
      for (auto& hs : handles) {
        for (auto& h : hs) {
          co_await test::wait_error(h); // cancelled, by design
        }
      }
    });
    for (auto& t : threads) t.join();
  }
  int cancelled = 0;
  for (auto& hs : handles)
    for (auto& h : hs) cancelled += h.cancelled() ? 1 : 0;
  CHECK(cancelled == 2 * per_thread);
  CHECK(test::live_frames == 0);
}

TEST_CASE("on an io_context made for one thread, shutdown gives up on a task that ignores "
          "cancellation and destroys its frame",
          "[one_thread][shutdown]") {
  asio::io_context ioc{1};
  Task<> stubborn;
  taskyard::shutdown_result report;
  {
    App app{"one-thread-shutdown", ioc};
    stubborn = app.add_task(ignores_cancellation(), "stubborn");
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      co_await test::yield();
      report = co_await a.shutdown_tasks(std::chrono::milliseconds(10));
    });
  }
  CHECK(report.forced == std::vector<std::string>{"stubborn"});
  CHECK(stubborn.forced());
  CHECK(test::live_frames == 0);
}

TEST_CASE("on an io_context made for one thread, a task that cancels itself by name ends "
          "cancelled, also when it catches the cancellation and returns at once",
          "[one_thread][cancel][self]") {
  asio::io_context ioc{1};
  Task<> rethrows;
  Task<> swallows;
  bool saw_aborted = false;
  {
    App app{"one-thread-self-cancel", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      rethrows = a.add_task(
          [](App& app_) -> asio::awaitable<void> { co_await app_.cancel_task("rethrows"); },
          "rethrows");
      swallows = a.add_task(
          [&](App& app_) -> asio::awaitable<void> {
            try {
              co_await app_.cancel_task("swallows");
            } catch (const boost::system::system_error& e) {
              saw_aborted = test::is_aborted(e);
            }
            // Returns at once: the task ends with no suspension after its cancellation.
          },
          "swallows");
      co_await test::wait_error(rethrows);
      co_await test::wait_error(swallows);
    });
  }
  CHECK(rethrows.cancelled());
  CHECK(saw_aborted);
  CHECK(swallows.cancelled());
}

TEST_CASE("on an io_context made for one thread, a coroutine a task awaits may cancel that task: "
          "the cancellation reaches both where they are suspended",
          "[one_thread][cancel]") {
  asio::io_context ioc{1};
  Task<> parent;
  bool child_saw_aborted = false;
  {
    App app{"one-thread-child-cancels-parent", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      parent = a.add_task(
          [&](App& app_) -> asio::awaitable<void> {
            // Work queued on the strand first, so that the child runs later, on its own, rather
            // than inline in the parent.
            auto strand = asio::make_strand(app_.io_context());
            asio::post(strand, [] {});
            co_await asio::co_spawn(
                strand,
                [&]() -> asio::awaitable<void> {
                  try {
                    co_await app_.cancel_task("parent");
                  } catch (const boost::system::system_error& e) {
                    child_saw_aborted = test::is_aborted(e);
                  }
                },
                asio::use_awaitable);
          },
          "parent");
      co_await test::wait_error(parent);
    });
  }
  // Emitted in place while the child ran, the cancellation would have been thrown out of the
  // child's co_spawn, and out of io_context::run.
  CHECK(child_saw_aborted);
  CHECK(parent.cancelled());
}

TEST_CASE("on an io_context made for one thread, a cancellation that arrives after its task has "
          "ended does not reach the task that has its switch next",
          "[one_thread][cancel]") {
  // A task's cancellation signal belongs to its switch, which the next task to start takes once
  // the task has finished (see task_gate.hpp). Here the first task ends, and the second starts on
  // its switch, between the first's cancel() and the emission that cancel() posted.
  asio::io_context ioc{1};
  auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
  Task<> first;
  Task<> second;
  {
    App app{"one-thread-switch-reuse", ioc};
    asio::co_spawn(ioc, app.serve(), asio::detached);
    ioc.poll(); // the lifecycle runs until it waits for stop()
    asio::steady_timer release_first(ioc, asio::steady_timer::time_point::max());
    first = app.add_task([&]() -> asio::awaitable<void> {
      auto [ec] = co_await release_first.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)ec; // ends normally, whatever ended the wait
    });
    ioc.poll(); // the first task starts, and takes a switch
    // Every other switch in use, so that the first's is the one the next task takes.
    const std::size_t others = gates.free_count();
    for (std::size_t i = 0; i < others; ++i) app.add_task(test::suspend_forever());
    ioc.poll();
    REQUIRE(gates.free_count() == 0);
    const std::size_t pool_size = gates.size();

    release_first.cancel();                         // queued: the first task's end
    second = app.add_task(test::suspend_forever()); // queued: the second's start
    CHECK(first.cancel());                          // queued: the first's cancellation
    ioc.poll();
    CHECK(first.done());
    CHECK(gates.size() == pool_size); // the second took the switch the first gave back ...
    CHECK(gates.free_count() == 0);
    CHECK_FALSE(second.done()); // ... and the first's cancellation did not reach it

    app.stop();
    ioc.run();
  }
  CHECK(second.cancelled());
  CHECK(test::live_frames == 0);
}

TEST_CASE("run on several threads is refused on an io_context made for one thread",
          "[one_thread]") {
  asio::io_context ioc{1};
  App app{"one-thread-run", ioc};
  CHECK_THROWS_AS(app.run({.threads = 2, .handle_signals = false}), taskyard::invalid_run_options);
  // Nothing started: the App can still run, on the one thread its io_context was made for.
  Task<int> answer_task = app.add_task(answer());
  app.after_server_start([&](App& a) -> asio::awaitable<void> {
    co_await answer_task.wait();
    a.stop();
  });
  const auto result = app.run({.threads = 1, .handle_signals = false});
  CHECK(result.clean());
  CHECK(answer_task.result() == 42);
}

TEST_CASE("on an io_context made for one thread, a waiter resumes as the task it waits for ends, "
          "not a turn of the io_context later",
          "[one_thread][wait]") {
  asio::io_context ioc{1};
  std::vector<std::string> order;
  {
    App app{"one-thread-wake", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      auto ends = a.add_task(ends_after_a_turn(ioc, order));
      co_await ends.wait();
      order.push_back("waiter");
    });
  }
  CHECK(order == std::vector<std::string>{"waiter", "next turn"});
}

TEST_CASE("on an io_context made for one thread, several waiters of a task all resume on later "
          "turns, none inside the task's end",
          "[one_thread][wait]") {
  asio::io_context ioc{1};
  std::vector<std::string> order;
  {
    App app{"one-thread-waiters", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      auto ends = a.add_task(ends_after_a_turn(ioc, order));
      // Resumed in place, the first waiter would hold the second back until it suspended.
      auto other = a.add_task([&order, ends]() -> asio::awaitable<void> {
        co_await ends.wait();
        order.push_back("other waiter");
      });
      co_await ends.wait();
      order.push_back("waiter");
      co_await other.wait();
    });
  }
  REQUIRE(order.size() == 3);
  CHECK(order[0] == "next turn");
}

TEST_CASE("on an io_context made for one thread, a chain of tasks each awaiting the one before "
          "resumes in place only so deep, then on later turns",
          "[one_thread][wait]") {
  asio::io_context ioc{1};
  std::vector<std::string> order;
  {
    App app{"one-thread-chain", ioc};
    test::run_app(app, [&](App& a) -> asio::awaitable<void> { co_await chain(a, order); });
  }
  check_chain(order);
}

TEST_CASE("on an io_context made for one thread, the failure of a waiter resumed in place comes "
          "out of io_context::run after the task's end, and later waiters still resume in place",
          "[one_thread][wait]") {
  asio::io_context ioc{1};
  std::vector<std::string> order;
  App app{"one-thread-throwing-waiter", ioc};
  bool served = false;
  asio::co_spawn(ioc, app.serve(), [&](std::exception_ptr) { served = true; });
  const auto rethrow = [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  };
  auto ends = app.add_task(ends_after_a_turn(ioc, order));
  // The waiter's completion handler rethrows. The io_context's executor, dispatching in place,
  // catches what the waiter throws and run() rethrows it once the task's completion has returned.
  asio::co_spawn(
      ioc,
      [ends]() -> asio::awaitable<void> {
        co_await ends.wait();
        throw std::runtime_error("the waiter failed");
      },
      rethrow);
  CHECK_THROWS_WITH(ioc.run(), "the waiter failed");
  REQUIRE(ends.done());
  ioc.poll(); // "next turn"
  order.clear();

  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await chain(app, order);
        app.stop();
      },
      rethrow);
  ioc.run();
  CHECK(served);
  check_chain(order);
}
