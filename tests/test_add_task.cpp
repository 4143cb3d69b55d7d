// add_task: every accepted form, App injection, results, deferral before run, never starting
// inline. Values are awaited before they are checked: g++ 12 may evaluate a co_await inside a
// Catch2 macro more than once.
#include <taskyard/app.hpp>

#include "support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/version.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

asio::awaitable<int> forty_two() { co_return 42; }

asio::awaitable<std::string> name_of(App& app) { co_return app.name(); }

asio::awaitable<int> add(int a, int b) { co_return a + b; }

asio::awaitable<int> add_with_app(int a, App& app) {
  co_return a + static_cast<int>(app.name().size());
}

/// A callable whose move throws: add_task must move it at most once, where a throw still makes it
/// fail cleanly, and never on the task's way to its coroutine.
struct throws_when_moved {
  int* moves;
  explicit throws_when_moved(int& m) : moves(&m) {}
  throws_when_moved(const throws_when_moved&) = default;
  throws_when_moved& operator=(const throws_when_moved&) = delete;
  throws_when_moved(throws_when_moved&& other) noexcept(false) : moves(other.moves) {
    ++*moves;
    throw std::runtime_error("moved");
  }
  ~throws_when_moved() = default;
  asio::awaitable<int> operator()() const { co_return 5; }
};

/// Counts its live copies: a capture, and a task's result.
template <typename Tag>
struct counted_copies {
  static inline int live = 0;
  counted_copies() noexcept { ++live; }
  counted_copies(const counted_copies&) noexcept { ++live; }
  counted_copies& operator=(const counted_copies&) = delete;
  ~counted_copies() { --live; }
};
using counted = counted_copies<struct capture_tag>;
using counted_result = counted_copies<struct result_tag>;

} // namespace

TEST_CASE("add_task accepts an awaitable made by the caller", "[add_task]") {
  App app{"awaitable"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> t = a.add_task(forty_two());
    const auto got1 = co_await t.wait();
    CHECK(got1 == 42);
    CHECK(t.done());
    CHECK_FALSE(t.cancelled());
    CHECK(t.result() == 42);
  });
}

TEST_CASE("add_task injects the App into a callable that asks for it", "[add_task][inject]") {
  App app{"injected"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<std::string> by_function = a.add_task(name_of);
    Task<std::string> by_lambda =
        a.add_task([](App& me) -> asio::awaitable<std::string> { co_return me.name() + "!"; });
    Task<std::string> by_generic_lambda =
        a.add_task([](auto& me) -> asio::awaitable<std::string> { co_return me.name() + "?"; });
    const auto got2 = co_await by_function.wait();
    CHECK(got2 == "injected");
    const auto got3 = co_await by_lambda.wait();
    CHECK(got3 == "injected!");
    const auto got4 = co_await by_generic_lambda.wait();
    CHECK(got4 == "injected?");
  });
}

TEST_CASE("add_task calls a callable that takes nothing without arguments", "[add_task][inject]") {
  App app{"nullary"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> t = a.add_task(forty_two);
    Task<int> l = a.add_task([]() -> asio::awaitable<int> { co_return 7; });
    const auto got5 = co_await t.wait();
    CHECK(got5 == 42);
    const auto got6 = co_await l.wait();
    CHECK(got6 == 7);
  });
}

TEST_CASE("std::bind_front results are callables like any other (functools.partial)",
          "[add_task][inject]") {
  App app{"partial"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> bound = a.add_task(std::bind_front(add, 40, 2));
    // The bound call still asks for the App: it is injected.
    Task<int> bound_with_app = a.add_task(std::bind_front(add_with_app, 100));
    const auto got7 = co_await bound.wait();
    CHECK(got7 == 42);
    const auto got8 = co_await bound_with_app.wait();
    CHECK(got8 == 107);
  });
}

TEST_CASE("a lambda's captures live as long as its task", "[add_task]") {
  App app{"captures"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    std::string text = "kept alive";
    Task<std::string> t = a.add_task([copy = text]() -> asio::awaitable<std::string> {
      co_await test::yield();
      co_await test::yield();
      co_return copy;
    });
    text = "changed";
    const auto got9 = co_await t.wait();
    CHECK(got9 == "kept alive");
  });
}

TEST_CASE("when a waiter resumes, its task's captures are gone, and with the last handle its "
          "state and result",
          "[add_task]") {
  // The task never suspends: it ends inside the turn that starts it, and its lone waiter resumes
  // right there (see Task::wait). The capture is const, so every move of the lambda copies it.
  asio::io_context ioc{1};
  App app{"captures-gone", ioc};
  int captures_when_resumed = -1;
  int results_without_handle = -1;
  asio::co_spawn(ioc, app.serve(), asio::detached);
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        {
          Task<counted_result> t = [&] {
            const counted capture;
            return app.add_task(
                [capture]() -> asio::awaitable<counted_result> { co_return counted_result{}; });
          }();
          (void)co_await t.wait();
          captures_when_resumed = counted::live;
        }
        results_without_handle = counted_result::live;
        app.stop();
      },
      asio::detached);
  ioc.run();
  CHECK(captures_when_resumed == 0);
  CHECK(results_without_handle == 0);
}

TEST_CASE("a callable whose move may throw is never moved on its task's way: copied, it runs, "
          "and moved, add_task throws and adds nothing",
          "[add_task]") {
  App app{"throwing-move"};
  int moves = 0;
  test::run_app(app, [&moves](App& a) -> asio::awaitable<void> {
    const throws_when_moved callable(moves);
    // Copied once into the task, then never moved again, on the App's strands as well.
    Task<int> copied = a.add_task(callable, "copied");
    const int copied_value = co_await copied.wait();
    CHECK(copied_value == 5);
    CHECK(moves == 0);
    // Moved into the task: the move throws out of add_task, which has added nothing.
    bool threw = false;
    try {
      a.add_task(throws_when_moved(moves), "moved");
    } catch (const std::runtime_error&) {
      threw = true;
    }
    CHECK(threw);
    CHECK(moves == 1);
    CHECK_FALSE(a.find_task("moved"));
    CHECK(a.tasks() == std::vector<Task<>>{copied});
  });
}

TEST_CASE("add_task never runs the task inside the call", "[add_task]") {
  App app{"not-inline"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    bool ran = false;
    Task<> t = a.add_task([&ran]() -> asio::awaitable<void> {
      ran = true;
      co_return;
    });
    CHECK_FALSE(ran); // scheduled, not run
    co_await t.wait();
    CHECK(ran);
  });
}

TEST_CASE("a task that never suspends finishes in the turn of the io_context that starts it",
          "[add_task][launch]") {
  // Its start is posted once, and nothing else: taskyard's own entry point runs the coroutine and
  // settles the task there. Launched with co_spawn (Boost other than 1.81, or
  // TASKYARD_LAUNCH_WITH_CO_SPAWN), the end takes one more turn: co_spawn posts once more before
  // completing a coroutine that never suspended.
  asio::io_context ioc{1};
  App app{"one-turn", ioc};
  asio::co_spawn(ioc, app.serve(), asio::detached);
  ioc.poll(); // the lifecycle runs until it waits for stop()
  bool ran = false;
  Task<int> t = app.add_task([&ran]() -> asio::awaitable<int> {
    ran = true;
    co_return 7;
  });
#if BOOST_VERSION / 100 == 1081 && !defined(TASKYARD_LAUNCH_WITH_CO_SPAWN)
  STATIC_REQUIRE(taskyard::detail::launches_directly);
#else
  STATIC_REQUIRE_FALSE(taskyard::detail::launches_directly);
#endif
  CHECK(ioc.poll_one() == 1);
  CHECK(ran);
  CHECK(t.done() == taskyard::detail::launches_directly);
  ioc.poll();
  REQUIRE(t.done());
  CHECK(t.result() == 7);
  app.stop();
  ioc.run();
}

TEST_CASE("tasks added before run start when the App starts, and callables are invoked only then",
          "[add_task][before_run]") {
  App app{"deferred"};
  int invoked = 0;
  int ran = 0;
  auto slow_work = [&invoked, &ran](App&) {
    ++invoked;
    return [](int& counter) -> asio::awaitable<void> {
      ++counter;
      co_return;
    }(ran);
  };
  Task<> a = app.add_task(slow_work);
  Task<> b = app.add_task(slow_work, "named-before-run");
  CHECK(invoked == 0);
  CHECK_FALSE(a.done());
  CHECK(app.get_task("named-before-run") == b);

  int started_when_before_server_start_ran = -1;
  app.before_server_start([&] { started_when_before_server_start_ran = invoked; });
  test::run_app(app, [&](App&) -> asio::awaitable<void> {
    co_await a.wait();
    co_await b.wait();
  });
  CHECK(started_when_before_server_start_ran == 0); // started after before_server_start
  CHECK(invoked == 2);
  CHECK(ran == 2);
}

TEST_CASE("the same callable added three times before run runs exactly three times",
          "[add_task][before_run]") {
  App app{"three-times"};
  int runs = 0;
  auto slow_work = [&runs]() -> asio::awaitable<void> {
    ++runs;
    co_return;
  };
  std::vector<Task<>> added{app.add_task(slow_work), app.add_task(slow_work),
                            app.add_task(slow_work)};
  test::run_app(app, [&](App&) -> asio::awaitable<void> {
    for (auto& t : added) co_await t.wait();
  });
  CHECK(runs == 3);
}

TEST_CASE("unnamed tasks are tracked but not listed", "[add_task]") {
  App app{"unnamed"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> unnamed = a.add_task(test::suspend_forever());
    Task<> named = a.add_task(test::suspend_forever(), "listed");
    co_await test::yield();
    auto listed = a.tasks();
    REQUIRE(listed.size() == 1);
    CHECK(listed.front() == named);
    CHECK(unnamed.name().empty());
    CHECK_FALSE(unnamed.done());
  });
  // Shutdown reached the unnamed task too.
}

TEST_CASE("shutdown cancels unnamed tasks as well as named ones", "[add_task][shutdown]") {
  App app{"unnamed-shutdown"};
  Task<> unnamed;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    unnamed = a.add_task(test::suspend_forever());
    co_return;
  });
  CHECK(unnamed.done());
  CHECK(unnamed.cancelled());
}

TEST_CASE("add_task after the App has stopped is a clear error", "[add_task][errors]") {
  App app{"stopped"};
  test::run_app(app, [](App&) -> asio::awaitable<void> { co_return; });
  try {
    app.add_task(forty_two());
    FAIL("add_task after stop did not throw");
  } catch (const taskyard::app_stopped& e) {
    CHECK_THAT(e.what(), Catch::Contains("stopped") && Catch::Contains("'stopped'"));
  }
  CHECK_THROWS_AS(app.add_task(forty_two, "late"), taskyard::app_stopped);
}

TEST_CASE("a Task<T> converts to Task<> and compares equal to it", "[task]") {
  App app{"views"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> typed = a.add_task(forty_two(), "typed");
    Task<> any = typed;
    CHECK(any == typed);
    co_await any.wait(); // waits for the outcome, discards the value
    CHECK(typed.result() == 42);
    CHECK(a.get_task<int>("typed").result() == 42);
    CHECK_THROWS_AS(a.get_task<std::string>("typed"), taskyard::task_type_mismatch);
  });
}

TEST_CASE("result() of a running task throws task_not_finished", "[task][errors]") {
  App app{"not-finished"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(test::suspend_forever(), "sleeper");
    CHECK_THROWS_AS(t.result(), taskyard::task_not_finished);
    CHECK_THROWS_AS(t.exception(), taskyard::task_not_finished);
    co_await a.cancel_task("sleeper");
    CHECK(t.cancelled());
  });
}
