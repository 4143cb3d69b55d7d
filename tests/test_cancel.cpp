#include <taskyard/app.hpp>
// Cancellation: cancel_task and Task::cancel, messages, cleanup after cancellation, cancelling
// oneself, tasks that never started, waiters, foreign threads.

#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

asio::awaitable<int> forty_two() { co_return 42; }

} // namespace

TEST_CASE("cancel_task cancels a task and waits until it has finished", "[cancel]") {
  App app{"cancel-task"};
  bool saw_cancellation = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(
        [&]() -> asio::awaitable<void> {
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error& e) {
            saw_cancellation = test::is_aborted(e);
            throw;
          }
        },
        "sleeper");
    co_await test::yield();
    CHECK_FALSE(t.done());

    auto cancel_returned = co_await a.cancel_task("sleeper", "no longer needed");
    CHECK(cancel_returned);
    // Finished by the time cancel_task returns.
    CHECK(t.done());
    CHECK(t.cancelled());
    CHECK_FALSE(t.failed());
    CHECK(saw_cancellation);
    CHECK(t.cancel_message() == "no longer needed");
    CHECK(t.exception() == nullptr); // cancelled is not failed
    // Still registered, as finished tasks are until purged.
    CHECK(a.get_task("sleeper") == t);
  });
}

TEST_CASE("Task::cancel returns true on a running task and false, doing nothing, on a finished "
          "one",
          "[cancel]") {
  App app{"task-cancel"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> sleeper = a.add_task(test::suspend_forever());
    co_await test::yield();
    CHECK(sleeper.cancel("first"));
    // Does not wait: the task ends later, on its own strand.
    auto sleeper_error = co_await test::wait_error(sleeper);
    CHECK(sleeper_error == asio::error::operation_aborted);
    CHECK(sleeper.cancelled());
    CHECK(sleeper.cancel_message() == "first");
    CHECK_FALSE(sleeper.cancel("second")); // finished: a no-op
    CHECK(sleeper.cancel_message() == "first");

    Task<int> answer = a.add_task(forty_two());
    auto answer_value = co_await answer.wait();
    CHECK(answer_value == 42);
    CHECK_FALSE(answer.cancel("too late"));
    CHECK_FALSE(answer.cancelled());
    CHECK(answer.cancel_message().empty());
    CHECK(answer.result() == 42);

    // The message kept is the last one given while the task runs.
    Task<> twice = a.add_task(test::suspend_forever());
    co_await test::yield();
    CHECK(twice.cancel("one"));
    CHECK(twice.cancel("two"));
    auto twice_error = co_await test::wait_error(twice);
    CHECK(twice_error == asio::error::operation_aborted);
    CHECK(twice.cancel_message() == "two");
  });
}

TEST_CASE("cancel_task on a finished task does nothing: the task keeps its result", "[cancel]") {
  App app{"cancel-finished"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> answer = a.add_task(forty_two(), "answer");
    auto answer_value = co_await answer.wait();
    CHECK(answer_value == 42);
    auto cancel_returned = co_await a.cancel_task("answer", "pointless");
    CHECK(cancel_returned); // registered: true
    CHECK(answer.done());
    CHECK_FALSE(answer.cancelled());
    CHECK(answer.cancel_message().empty());
    CHECK(answer.result() == 42);
    auto answer_value2 = co_await answer.wait();
    CHECK(answer_value2 == 42);

    // A cancelled task keeps its first cancellation's message.
    Task<> sleeper = a.add_task(test::suspend_forever(), "sleeper");
    auto cancel_returned2 = co_await a.cancel_task("sleeper", "first");
    CHECK(cancel_returned2);
    auto cancel_returned3 = co_await a.cancel_task("sleeper", "second");
    CHECK(cancel_returned3);
    CHECK(sleeper.cancel_message() == "first");
  });
}

TEST_CASE("cancel_task on an unknown name throws task_not_found, or returns false with "
          "missing_task::ignore",
          "[cancel][errors]") {
  App app{"cancel-unknown"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> other = a.add_task(test::suspend_forever(), "other");
    std::string what;
    try {
      co_await a.cancel_task("ghost", "whatever");
    } catch (const taskyard::task_not_found& e) {
      what = e.what();
    }
    CHECK_THAT(what, Catch::Contains("'ghost'"));

    auto cancel_returned = co_await a.cancel_task("ghost", "", taskyard::missing_task::ignore);
    CHECK_FALSE(cancel_returned);
    auto cancel_returned2 = co_await a.cancel_task("other", "", taskyard::missing_task::ignore);
    CHECK(cancel_returned2);
    CHECK(other.cancelled());

    // A purged task is unknown too.
    CHECK(a.purge_tasks() == 1);
    auto cancel_returned3 = co_await a.cancel_task("other", "", taskyard::missing_task::ignore);
    CHECK_FALSE(cancel_returned3);
  });
}

TEST_CASE("cancel_task calls that complete at once, one after another, do not nest on the stack",
          "[cancel]") {
  // Each completes in place, as a coroutine's co_return would, up to a bound: without it, the
  // caller would resume a level deeper on the stack at each call. Where the coroutine runs on the
  // stack is where its resumption's frame is.
  App app{"flat"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> done = a.add_task(test::yield(), "done");
    co_await done.wait();
    const auto first = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    std::uintptr_t spread = 0;
    std::size_t found = 0;
    for (int i = 0; i < 2000; ++i) {
      const bool ghost = co_await a.cancel_task("ghost", "", taskyard::missing_task::ignore);
      const bool finished = co_await a.cancel_task("done");
      found += (ghost ? 1 : 0) + (finished ? 1 : 0);
      const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
      spread = std::max(spread, here > first ? here - first : first - here);
    }
    CHECK(found == 2000);
    CHECK(spread < 64 * 1024);
  });
}

TEST_CASE("cancel_task waits for a task's asynchronous cleanup after cancellation",
          "[cancel][cleanup]") {
  App app{"cleanup"};
  test::signal suspended(app.io_context());
  bool caught = false;
  int cleanup_steps = 0;
  bool cleanup_finished = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(
        [&]() -> asio::awaitable<void> {
          suspended.notify();
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error& e) {
            if (!test::is_aborted(e)) throw;
            caught = true;
          }
          // Clean up asynchronously, across several suspension points.
          co_await asio::this_coro::reset_cancellation_state();
          for (int i = 0; i < 5; ++i) {
            co_await test::yield();
            ++cleanup_steps;
          }
          asio::steady_timer timer(co_await asio::this_coro::executor,
                                   std::chrono::milliseconds(1));
          co_await timer.async_wait(asio::use_awaitable);
          co_await test::yield();
          cleanup_finished = true; // the very last thing the task does
        },
        "cleaner");
    co_await suspended.wait();

    auto cancel_returned = co_await a.cancel_task("cleaner", "closing");
    CHECK(cancel_returned);
    CHECK(caught);
    CHECK(cleanup_steps == 5);
    CHECK(cleanup_finished);
    CHECK(t.done());
    // It returned normally after its cancellation was requested: that counts as cancelled.
    CHECK(t.cancelled());
    CHECK(t.cancel_message() == "closing");
  });
}

TEST_CASE("after catching the cancellation, every co_await throws until the task resets its "
          "cancellation state",
          "[cancel][cleanup]") {
  App app{"reset"};
  test::signal suspended(app.io_context());
  int aborted_seen = 0;
  bool resumed_after_reset = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(
        [&]() -> asio::awaitable<void> {
          suspended.notify();
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error& e) {
            if (test::is_aborted(e)) ++aborted_seen;
          }
          try {
            co_await test::yield();
          } catch (const boost::system::system_error& e) {
            if (test::is_aborted(e)) ++aborted_seen;
          }
          co_await asio::this_coro::reset_cancellation_state();
          co_await test::yield();
          resumed_after_reset = true;
        },
        "stubborn");
    co_await suspended.wait();
    auto cancel_returned = co_await a.cancel_task("stubborn");
    CHECK(cancel_returned);
    CHECK(aborted_seen == 2);
    CHECK(resumed_after_reset);
    CHECK(t.cancelled());
  });
}

TEST_CASE("a task that cancels itself by name does not hang: it ends cancelled", "[cancel][self]") {
  App app{"self-cancel"};
  bool before = false;
  bool after = false;
  bool saw_aborted = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> me = a.add_task(
        [&](App& app_) -> asio::awaitable<void> {
          before = true;
          try {
            co_await app_.cancel_task("me", "by myself");
          } catch (const boost::system::system_error& e) {
            saw_aborted = test::is_aborted(e);
            throw;
          }
          after = true; // never reached: the cancellation arrives at that co_await
        },
        "me");
    auto me_error = co_await test::wait_error(me);
    CHECK(me_error == asio::error::operation_aborted);
    CHECK(before);
    CHECK(saw_aborted);
    CHECK_FALSE(after);
    CHECK(me.done());
    CHECK(me.cancelled());
    CHECK(me.cancel_message() == "by myself");
    // And from the outside, cancelling it again is a no-op that returns at once.
    auto cancel_returned = co_await a.cancel_task("me");
    CHECK(cancel_returned);
    CHECK(me.cancel_message() == "by myself");
  });
}

TEST_CASE("cancel_task from a coroutine that a running child of the task launched inline: the "
          "child's end is not disturbed, and the task ends cancelled",
          "[cancel]") {
  // The task awaits a child through co_spawn. The child, before it ever suspends, co_spawns a
  // coroutine that runs inline (co_spawn dispatches to an executor its caller runs) and cancels the
  // task by name, then returns without suspending. A cancellation emitted then and there would
  // mark the running child cancelled, and co_spawn's last co_await in it would throw
  // operation_aborted out of io_context::run, leaving the task unfinished.
  auto scenario = [](asio::io_context& ioc) {
    App app{"inline-canceller", ioc};
    bool child_returned = false;
    bool task_saw_child_end = false;
    bool canceller_found = false;
    Task<> task;
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      task = a.add_task(
          [&](App& app_) -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            co_await asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                  asio::co_spawn(
                      ex,
                      [&]() -> asio::awaitable<void> {
                        canceller_found = co_await app_.cancel_task("parent");
                      },
                      asio::detached);
                  child_returned = true;
                  co_return; // without suspending
                },
                asio::use_awaitable);
            task_saw_child_end = true;
          },
          "parent");
      co_await test::wait_error(task);
    });
    CHECK(child_returned);
    CHECK(task_saw_child_end);
    CHECK(canceller_found);
    CHECK(task.cancelled()); // it returned after its cancellation was requested
  };
  SECTION("on an io_context made for one thread") {
    asio::io_context ioc{1};
    scenario(ioc);
  }
  SECTION("on an io_context any number of threads may run: a strand per task") {
    asio::io_context ioc;
    scenario(ioc);
  }
}

TEST_CASE("cancelling a task added before run makes it cancelled at once: it never runs",
          "[cancel][before_run]") {
  App app{"before-run"};
  int invoked = 0;
  int ran = 0;
  Task<> t = app.add_task(
      [&](App&) {
        ++invoked;
        return [](int& counter) -> asio::awaitable<void> {
          ++counter;
          co_return;
        }(ran);
      },
      "early");
  Task<> unnamed = app.add_task([&]() -> asio::awaitable<void> {
    ++ran;
    co_return;
  });
  CHECK_FALSE(t.done());
  CHECK(t.cancel("not needed"));
  CHECK(unnamed.cancel());
  // At once: before the App ever runs.
  CHECK(t.done());
  CHECK(t.cancelled());
  CHECK(unnamed.cancelled());
  CHECK(t.cancel_message() == "not needed");
  CHECK_FALSE(t.cancel("again"));
  CHECK(t.cancel_message() == "not needed");

  boost::system::error_code waited;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    waited = co_await test::wait_error(t);
    CHECK(a.get_task("early") == t); // still registered, like any finished task
    auto cancel_returned = co_await a.cancel_task("early", "once more");
    CHECK(cancel_returned); // a no-op
  });
  CHECK(waited == asio::error::operation_aborted);
  CHECK(t.cancel_message() == "not needed");
  CHECK(invoked == 0);
  CHECK(ran == 0);
}

TEST_CASE("a task cancelled before it got to start never runs", "[cancel]") {
  App app{"not-started"};
  int ran = 0;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    // The start is scheduled, never inline: the task has not started when add_task returns.
    Task<> t = a.add_task(
        [&]() -> asio::awaitable<void> {
          ++ran;
          co_return;
        },
        "too-late");
    CHECK(t.cancel("changed my mind"));
    CHECK(t.done());
    CHECK(t.cancelled());
    auto t_error = co_await test::wait_error(t);
    CHECK(t_error == asio::error::operation_aborted);

    Task<> u = a.add_task([&]() -> asio::awaitable<void> {
      ++ran;
      co_return;
    });
    auto cancel_returned = co_await a.cancel_task("too-late");
    CHECK(cancel_returned == true);
    CHECK(u.cancel());
    CHECK(u.cancelled());
    co_await test::yield();
  });
  CHECK(ran == 0);
}

TEST_CASE("wait() and result() of a cancelled task throw operation_aborted with the message",
          "[cancel]") {
  App app{"wait-cancelled"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> t = a.add_task(
        []() -> asio::awaitable<int> {
          co_await test::suspend_forever();
          co_return 1;
        },
        "victim");
    co_await test::yield();
    auto cancel_returned = co_await a.cancel_task("victim", "shutting the shop");
    CHECK(cancel_returned);

    boost::system::error_code code;
    std::string what;
    try {
      (void)co_await t.wait();
    } catch (const boost::system::system_error& e) {
      code = e.code();
      what = e.what();
    }
    CHECK(code == asio::error::operation_aborted);
    CHECK_THAT(what, Catch::Contains("'victim'") && Catch::Contains("shutting the shop"));

    try {
      (void)t.result();
      FAIL("result() of a cancelled task did not throw");
    } catch (const boost::system::system_error& e) {
      CHECK(e.code() == asio::error::operation_aborted);
    }
    Task<> any = t;
    CHECK_THROWS_AS(any.result(), boost::system::system_error);
    CHECK(t.exception() == nullptr);
  });
}

TEST_CASE("a task can be cancelled from a foreign thread while the io_context runs",
          "[cancel][threads]") {
  App app{"foreign"};
  test::signal suspended(app.io_context());
  std::atomic<int> cleanups{0};
  auto victim = [&]() -> asio::awaitable<void> {
    suspended.notify();
    try {
      co_await test::suspend_forever();
    } catch (const boost::system::system_error&) {
      ++cleanups;
      throw;
    }
  };

  Task<> first;
  Task<> second;
  bool cancel_returned = false;
  boost::system::error_code first_error;
  bool cancel_task_returned = false;
  bool done_when_cancel_task_returned = false;
  bool cancelled_when_cancel_task_returned = false;
  std::string foreign_exception;
  boost::system::error_code second_error;

  test::run_app(
      app,
      [&](App& a) -> asio::awaitable<void> {
        // Task::cancel from a thread that does not run the io_context.
        first = a.add_task(victim, "first");
        co_await suspended.wait(); // the task is suspended by the time this is seen
        std::thread canceller([&] { cancel_returned = first.cancel("from a foreign thread"); });
        first_error = co_await test::wait_error(first);
        canceller.join();

        // cancel_task, spawned from a foreign thread, waited for there.
        second = a.add_task(victim, "second");
        co_await suspended.wait();
        std::thread awaiter([&] {
          try {
            auto done = asio::co_spawn(a.get_executor(), a.cancel_task("second", "from afar"),
                                       asio::use_future);
            cancel_task_returned = done.get();
            done_when_cancel_task_returned = second.done();
            cancelled_when_cancel_task_returned = second.cancelled();
          } catch (const std::exception& e) {
            foreign_exception = e.what();
          }
        });
        second_error = co_await test::wait_error(second);
        awaiter.join();
      },
      {.threads = 2, .handle_signals = false});

  CHECK(cancel_returned);
  CHECK(first_error == asio::error::operation_aborted);
  CHECK(first.cancelled());
  CHECK(first.cancel_message() == "from a foreign thread");

  CHECK(foreign_exception.empty());
  CHECK(cancel_task_returned);
  CHECK(done_when_cancel_task_returned);
  CHECK(cancelled_when_cancel_task_returned);
  CHECK(second_error == asio::error::operation_aborted);
  CHECK(second.cancel_message() == "from afar");
  CHECK(cleanups.load() == 2);
}

TEST_CASE("a task that returns normally after catching the cancellation counts as cancelled",
          "[cancel]") {
  App app{"swallowed"};
  test::signal suspended(app.io_context());
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<int> t = a.add_task(
        [&]() -> asio::awaitable<int> {
          suspended.notify();
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error&) {
            co_return -1; // swallowed: returns a value instead
          }
          co_return 1;
        },
        "swallower");
    co_await suspended.wait();
    auto cancel_returned = co_await a.cancel_task("swallower", "stop");
    CHECK(cancel_returned);
    CHECK(t.done());
    CHECK(t.cancelled());
    CHECK_FALSE(t.failed());
    CHECK(t.exception() == nullptr);
    auto t_error = co_await test::wait_error(t);
    CHECK(t_error == asio::error::operation_aborted);
    CHECK_THROWS_AS(t.result(), boost::system::system_error);
  });
}

TEST_CASE("a cancelled waiter abandons only its wait: the task it waited for runs on",
          "[cancel][wait]") {
  App app{"waiter"};
  test::signal waiting(app.io_context());
  test::signal release(app.io_context());
  boost::system::error_code waiter_saw;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<int> target = a.add_task(
        [&]() -> asio::awaitable<int> {
          co_await release.wait();
          co_return 7;
        },
        "target");
    Task<> waiter = a.add_task([&, target]() -> asio::awaitable<void> {
      waiting.notify();
      try {
        (void)co_await target.wait();
      } catch (const boost::system::system_error& e) {
        waiter_saw = e.code();
        throw;
      }
    });
    co_await waiting.wait(); // the waiter is suspended in target.wait()
    CHECK(waiter.cancel("stop waiting"));
    auto waiter_error = co_await test::wait_error(waiter);
    CHECK(waiter_error == asio::error::operation_aborted);
    CHECK(waiter.cancelled());
    CHECK(waiter_saw == asio::error::operation_aborted);

    // The target was not affected, and its result is still there for others.
    CHECK_FALSE(target.done());
    CHECK(target.cancel_message().empty());
    release.notify();
    auto target_value = co_await target.wait();
    CHECK(target_value == 7);
    CHECK_FALSE(target.cancelled());
  });
}

TEST_CASE("cancelling the caller of cancel_task abandons its wait: the task still ends cancelled",
          "[cancel][wait]") {
  App app{"abandon-cancel-task"};
  test::signal suspended(app.io_context());
  test::signal calling(app.io_context());
  test::signal finish_cleanup(app.io_context());
  bool cleaned = false;
  bool canceller_returned = false;
  boost::system::error_code canceller_saw;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> slow = a.add_task(
        [&]() -> asio::awaitable<void> {
          suspended.notify();
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error&) {}
          co_await asio::this_coro::reset_cancellation_state();
          co_await finish_cleanup.wait();
          cleaned = true;
        },
        "slow");
    co_await suspended.wait();

    Task<> canceller = a.add_task([&](App& app_) -> asio::awaitable<void> {
      calling.notify();
      try {
        co_await app_.cancel_task("slow", "bye");
        canceller_returned = true;
      } catch (const boost::system::system_error& e) {
        canceller_saw = e.code();
        throw;
      }
    });
    co_await calling.wait(); // the canceller is waiting for "slow" to finish its cleanup
    CHECK(canceller.cancel());
    auto canceller_error = co_await test::wait_error(canceller);
    CHECK(canceller_error == asio::error::operation_aborted);
    CHECK(canceller_saw == asio::error::operation_aborted);
    CHECK_FALSE(canceller_returned);

    // "slow" got the cancellation and is still cleaning up.
    CHECK_FALSE(slow.done());
    CHECK(slow.cancel_message() == "bye");
    finish_cleanup.notify();
    auto slow_error = co_await test::wait_error(slow);
    CHECK(slow_error == asio::error::operation_aborted);
    CHECK(cleaned);
    CHECK(slow.cancelled());
  });
}

// ---------------------------------------------------------------------------------------------
// async_cancel_task: cancel_task for any completion token

namespace {

/// What an async_cancel_task handler was given, whether the task was done when it ran, and
/// whether it ran on the executor expected for it.
struct cancel_outcome {
  bool called = false;
  std::exception_ptr failure;
  bool found = false;
  bool task_done = false;
  bool on_expected_executor = false;
};

/// True if `e` holds an exception of type E.
template <typename E>
bool holds(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {}
  return false;
}

} // namespace

TEST_CASE("async_cancel_task runs its handler once the task has finished, never inside the call",
          "[cancel][async]") {
  App app{"async-cancel"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    test::signal completed(a.io_context());
    Task<> sleeper = a.add_task(test::suspend_forever(), "sleeper");
    Task<> other = a.add_task(test::suspend_forever(), "other");
    Task<int> done = a.add_task(forty_two(), "done");
    co_await done.wait();

    int completions = 0;
    // `on`: the executor the handler is expected to run on.
    auto record = [&](cancel_outcome& o, Task<> t, auto on) {
      return [&o, &completions, &completed, t, on](std::exception_ptr e, bool found) {
        o = {true, e, found, t.done(), on.running_in_this_thread()};
        ++completions;
        completed.notify();
      };
    };
    const auto io = a.get_executor();
    cancel_outcome on_sleeper, on_done, on_ghost, on_ignored, on_empty, on_other, on_ghost_strand;
    a.async_cancel_task("sleeper", "bye", taskyard::missing_task::raise,
                        record(on_sleeper, sleeper, io));
    a.async_cancel_task("done", record(on_done, done, io));
    a.async_cancel_task("ghost", record(on_ghost, sleeper, io));
    a.async_cancel_task("ghost", "", taskyard::missing_task::ignore,
                        record(on_ignored, sleeper, io));
    a.async_cancel_task("", record(on_empty, sleeper, io));
    // A handler with an executor of its own runs there, whether it waits or not.
    auto strand = asio::make_strand(a.io_context());
    a.async_cancel_task("other", asio::bind_executor(strand, record(on_other, other, strand)));
    a.async_cancel_task("ghost",
                        asio::bind_executor(strand, record(on_ghost_strand, other, strand)));
    // None ran inside its call, not even those that had nothing to wait for.
    CHECK(completions == 0);
    for (int i = 0; i < 7; ++i) co_await completed.wait();
    CHECK(completions == 7);
    for (const auto* o :
         {&on_sleeper, &on_done, &on_ghost, &on_ignored, &on_empty, &on_other, &on_ghost_strand})
      CHECK(o->on_expected_executor); // the App's io_context, unless the handler has an executor

    CHECK(on_sleeper.found);
    CHECK_FALSE(on_sleeper.failure);
    CHECK(on_sleeper.task_done);
    CHECK(sleeper.cancelled());
    CHECK(sleeper.cancel_message() == "bye");

    CHECK(on_done.found);
    CHECK_FALSE(on_done.failure);
    CHECK_FALSE(done.cancelled());
    CHECK(done.result() == 42);

    CHECK_FALSE(on_ghost.found);
    CHECK(holds<taskyard::task_not_found>(on_ghost.failure));
    CHECK(on_ignored.called);
    CHECK_FALSE(on_ignored.found);
    CHECK_FALSE(on_ignored.failure);
    CHECK(holds<taskyard::invalid_task_name>(on_empty.failure));

    CHECK(on_other.found);
    CHECK(on_other.task_done);
    CHECK(other.cancelled());
    CHECK(holds<taskyard::task_not_found>(on_ghost_strand.failure));
  });
}

TEST_CASE("async_cancel_task started for many running tasks at once: each handler runs once its "
          "own task has finished",
          "[cancel][async]") {
  App app{"async-cancel-many"};
  constexpr int n = 100;
  int cancelled_when_handled = 0;
  int completions = 0;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    test::signal started(a.io_context());
    test::signal all_handled(a.io_context());
    std::vector<Task<>> tasks;
    for (int i = 0; i < n; ++i) {
      tasks.push_back(a.add_task(
          [&]() -> asio::awaitable<void> {
            started.notify();
            co_await test::suspend_forever();
          },
          "task " + std::to_string(i)));
    }
    for (int i = 0; i < n; ++i) co_await started.wait();
    for (int i = 0; i < n; ++i) {
      a.async_cancel_task("task " + std::to_string(i), [&, i](std::exception_ptr e, bool found) {
        if (!e && found && tasks[static_cast<std::size_t>(i)].cancelled()) ++cancelled_when_handled;
        if (++completions == n) all_handled.notify();
      });
    }
    co_await all_handled.wait();
  });
  CHECK(completions == n);
  CHECK(cancelled_when_handled == n);
}

TEST_CASE("async_cancel_task takes any completion token: use_future from a foreign thread, "
          "use_awaitable, deferred, detached",
          "[cancel][async][threads]") {
  App app{"async-cancel-tokens"};
  test::signal suspended(app.io_context());
  auto victim = [&]() -> asio::awaitable<void> {
    suspended.notify();
    co_await test::suspend_forever();
  };
  bool found = false;
  bool done_when_found = false;
  std::string ghost_what;
  std::string foreign_exception;
  boost::system::error_code first_error;
  bool second_found = false;
  bool second_done = false;
  std::string third_message_before;
  bool third_found = false;
  boost::system::error_code fourth_error;
  Task<> first, second, third, fourth;

  test::run_app(app,
                [&](App& a) -> asio::awaitable<void> {
                  first = a.add_task(victim, "first");
                  co_await suspended.wait();
                  std::thread canceller([&] {
                    try {
                      auto done = a.async_cancel_task(
                          "first", "from afar", taskyard::missing_task::raise, asio::use_future);
                      found = done.get();
                      done_when_found = first.done();
                    } catch (const std::exception& e) {
                      foreign_exception = e.what();
                    }
                    try {
                      a.async_cancel_task("ghost", asio::use_future).get();
                    } catch (const taskyard::task_not_found& e) {
                      ghost_what = e.what();
                    }
                  });
                  first_error = co_await test::wait_error(first);
                  canceller.join();

                  second = a.add_task(victim, "second");
                  co_await suspended.wait();
                  second_found = co_await a.async_cancel_task("second", asio::use_awaitable);
                  second_done = second.done();

                  // deferred: nothing happens until the operation is started.
                  third = a.add_task(victim, "third");
                  co_await suspended.wait();
                  auto op = a.async_cancel_task("third", "late", taskyard::missing_task::raise,
                                                asio::deferred);
                  co_await test::yield();
                  third_message_before = third.cancel_message();
                  third_found = co_await std::move(op)(asio::use_awaitable);

                  fourth = a.add_task(victim, "fourth");
                  co_await suspended.wait();
                  a.async_cancel_task("fourth", asio::detached);
                  fourth_error = co_await test::wait_error(fourth);
                },
                {.threads = 2, .handle_signals = false});

  CHECK(foreign_exception.empty());
  CHECK(found);
  CHECK(done_when_found);
  CHECK(first_error == asio::error::operation_aborted);
  CHECK(first.cancel_message() == "from afar");
  CHECK_THAT(ghost_what, Catch::Contains("'ghost'"));
  CHECK(second_found);
  CHECK(second_done);
  CHECK(second.cancelled());
  CHECK(third_message_before.empty());
  CHECK(third_found);
  CHECK(third.cancelled());
  CHECK(third.cancel_message() == "late");
  CHECK(fourth_error == asio::error::operation_aborted);
  CHECK(fourth.cancelled());
}

TEST_CASE("async_cancel_task's cancellation slot: terminal or partial abandons the wait, total "
          "does nothing, and the task ends cancelled either way",
          "[cancel][async][wait]") {
  const auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                             asio::cancellation_type::total);
  CAPTURE(static_cast<unsigned>(type));
  const bool abandons = type != asio::cancellation_type::total;
  App app{"async-cancel-abandon"};
  test::signal started(app.io_context());
  test::signal cleaning(app.io_context());
  test::signal finish_cleanup(app.io_context());
  test::signal handled(app.io_context());
  cancel_outcome outcome;
  boost::system::error_code slow_error;
  bool cleaned = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> slow = a.add_task(
        [&]() -> asio::awaitable<void> {
          try {
            started.notify();
            co_await test::suspend_forever();
          } catch (const boost::system::system_error&) {}
          co_await asio::this_coro::reset_cancellation_state();
          cleaning.notify();
          co_await finish_cleanup.wait();
          cleaned = true;
        },
        "slow");
    co_await started.wait();

    asio::cancellation_signal stop_waiting;
    a.async_cancel_task(
        "slow",
        asio::bind_cancellation_slot(stop_waiting.slot(), [&](std::exception_ptr e, bool found) {
          outcome = {true, e, found, slow.done(), a.get_executor().running_in_this_thread()};
          handled.notify();
        }));
    co_await cleaning.wait(); // cancelled, and cleaning up
    stop_waiting.emit(type);
    // Were the wait still pending (total, or a slot not honoured), it would now end with the task,
    // after the abandoned wait's completion, which the emission has queued already.
    finish_cleanup.notify();
    co_await handled.wait();
    CHECK((outcome.failure == nullptr) == !abandons);
    if (outcome.failure) CHECK(test::is_aborted(outcome.failure));
    CHECK(outcome.found);
    CHECK(outcome.task_done == !abandons);
    CHECK(outcome.on_expected_executor);

    slow_error = co_await test::wait_error(slow);
    CHECK(slow.cancelled());
  });
  CHECK(cleaned);
  CHECK(slow_error == asio::error::operation_aborted);
}

TEST_CASE("a task that fails while handling its cancellation is failed: cancel_task does not "
          "rethrow",
          "[cancel][errors]") {
  App app{"fail-in-cleanup"};
  test::signal suspended(app.io_context());
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(
        [&]() -> asio::awaitable<void> {
          suspended.notify();
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error&) {}
          throw std::runtime_error("cleanup failed");
        },
        "clumsy");
    co_await suspended.wait();
    bool returned = false;
    try {
      returned = co_await a.cancel_task("clumsy", "stop");
    } catch (...) {
      FAIL("cancel_task rethrew the task's own failure");
    }
    CHECK(returned);
    CHECK(t.done());
    CHECK(t.failed());
    CHECK_FALSE(t.cancelled());
    std::string what;
    try {
      co_await t.wait();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "cleanup failed");
  });
}

TEST_CASE("a task whose coroutine has returned keeps its result if cancelled afterwards",
          "[cancel]") {
  App app{"returned"};
  test::signal returning(app.io_context());
  bool returned = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<int> t = a.add_task(
        [&]() -> asio::awaitable<int> {
          returning.notify();
          returned = true;
          co_return 42; // no suspension point after the notification
        },
        "quick");
    co_await returning.wait();
    REQUIRE(returned); // the coroutine has returned its value: it ended before any cancellation
    INFO("done() when cancelled: " << t.done());
    (void)t.cancel("too late");
    boost::system::error_code code = co_await test::wait_error(t);
    CHECK_FALSE(code);
    CHECK_FALSE(t.cancelled());
    CHECK(t.done());
    if (!t.cancelled()) CHECK(t.result() == 42);
  });
}

TEST_CASE("a switch emits a cancellation only for the task it was made for, and keeps the last "
          "task's handler for the next",
          "[cancel]") {
  // The signal stays with the switch, and its handler with it until the next task's co_spawn
  // installs its own in the same memory: the generation tells whose cancellation an emission is.
  // (Nothing emits for the next task before its co_spawn has replaced the handler: its
  // cancellation is posted to where it runs, after its start.)
  asio::io_context ioc{GENERATE(1, BOOST_ASIO_CONCURRENCY_HINT_DEFAULT)};
  auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
  const taskyard::detail::gate_ref first = gates.acquire();
  int emitted = 0;
  first.cancellation_slot().assign([&](asio::cancellation_type) { ++emitted; });
  first.emit_terminal();
  CHECK(emitted == 1);

  gates.release(first);
  first.emit_terminal(); // its task has finished
  CHECK(emitted == 1);

  // Handed out first in, first out: the last free switch is the one just given back.
  taskyard::detail::gate_ref next;
  for (std::size_t free = gates.free_count(); free > 0; --free) next = gates.acquire();
  next.emit_terminal(); // the handler is still installed, for the next task's co_spawn to replace
  CHECK(emitted == 2);
  gates.release(next);
  CHECK(next.cancellation_slot().has_handler()); // a free switch keeps it
  first.emit_terminal();
  CHECK(emitted == 2);
}
