// Every snippet of the source documents (Sanic's "Background tasks" page), in C++, with what it
// must do asserted. The examples/ programs are the same snippets as runnable programs.
#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using taskyard::App;
using taskyard::Task;

namespace {

// asyncio.sleep(5), shortened: the tests wait on the tasks, never on the clock.
asio::awaitable<void> sleep_a_little() {
  asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
  co_await timer.async_wait(asio::use_awaitable);
}

} // namespace

// async def notify_server_started_after_five_seconds():
//     await asyncio.sleep(5)
//     print('Server successfully started!')
// app.add_task(notify_server_started_after_five_seconds())
TEST_CASE("seed: add_task(notify_server_started_after_five_seconds())", "[seed]") {
  std::ostringstream out;
  auto notify_server_started_after_five_seconds = [&out]() -> asio::awaitable<void> {
    co_await sleep_a_little();
    out << "Server successfully started!\n";
  };
  App app{"seed"};
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> task = a.add_task(notify_server_started_after_five_seconds());
    co_await task.wait();
  });
  CHECK(out.str() == "Server successfully started!\n");
}

// async def auto_inject(app):
//     await asyncio.sleep(5)
//     print(app.name)
// app.add_task(auto_inject)
TEST_CASE("seed: add_task(auto_inject) injects the app", "[seed][inject]") {
  std::ostringstream out;
  auto auto_inject = [&out](App& app) -> asio::awaitable<void> {
    co_await sleep_a_little();
    out << app.name() << '\n';
  };
  App app{"AutoInjectApp"};
  test::run_app(app,
                [&](App& a) -> asio::awaitable<void> { co_await a.add_task(auto_inject).wait(); });
  CHECK(out.str() == "AutoInjectApp\n");
}

// async def explicit_inject(app):
//     await asyncio.sleep(5)
//     print(app.name)
// app.add_task(explicit_inject(app))
TEST_CASE("seed: add_task(explicit_inject(app)) passes the app explicitly", "[seed][inject]") {
  std::ostringstream out;
  auto explicit_inject = [&out](App& app) -> asio::awaitable<void> {
    co_await sleep_a_little();
    out << app.name() << '\n';
  };
  App app{"ExplicitInjectApp"};
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    co_await a.add_task(explicit_inject(a)).wait();
  });
  CHECK(out.str() == "ExplicitInjectApp\n");
}

// async def slow_work(...): ...
// async def even_slower(num): ...
// app = Sanic(...)
// app.add_task(slow_work)  # Note: we are passing the callable and not coroutine object
// app.run(...)
// app.add_task(even_slower(10))  # ... or we can call the function and pass the coroutine.
// app.run(...)
// (tip) functools.partial binds arguments to slow_work.
TEST_CASE("seed: tasks added before app.run, as a callable, a coroutine, and a partial",
          "[seed][before_run]") {
  std::vector<std::string> ran;
  int slow_work_calls = 0;
  auto slow_work = [&](App& app) -> asio::awaitable<void> {
    ++slow_work_calls;
    co_await sleep_a_little();
    ran.push_back("slow_work in " + app.name());
  };
  auto even_slower = [&](int num) -> asio::awaitable<void> {
    co_await sleep_a_little();
    ran.push_back("even_slower(" + std::to_string(num) + ")");
  };
  auto slow_work_with = [&](std::string what, App&) -> asio::awaitable<void> {
    co_await sleep_a_little();
    ran.push_back("partial " + what);
  };

  App app{"BeforeRun"};
  Task<> callable = app.add_task(slow_work);
  Task<> coroutine = app.add_task(even_slower(10));
  Task<> partial = app.add_task(std::bind_front(slow_work_with, std::string("bound")));
  CHECK(slow_work_calls == 0); // the callable is invoked when the app starts, not before
  CHECK_FALSE(callable.done());

  test::run_app(app, [&](App&) -> asio::awaitable<void> {
    co_await callable.wait();
    co_await coroutine.wait();
    co_await partial.wait();
  });
  CHECK(slow_work_calls == 1); // one process: created once
  std::sort(ran.begin(), ran.end());
  CHECK(ran ==
        std::vector<std::string>{"even_slower(10)", "partial bound", "slow_work in BeforeRun"});
}

// app.add_task(slow_work, name="slow_task")
// task = app.get_task("slow_task")
// await app.cancel_task("slow_task")
// app.purge_tasks()
TEST_CASE("seed: named tasks: add, get, cancel, list, purge", "[seed][named]") {
  test::live_frames = 0;
  bool cleaned_up = false;
  auto slow_work = [&cleaned_up]() -> asio::awaitable<void> {
    test::frame_probe probe;
    try {
      co_await test::suspend_forever();
    } catch (const boost::system::system_error&) {
      cleaned_up = true;
      throw;
    }
  };

  App app{"Named"};
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> added = a.add_task(slow_work, "slow_task");
    Task<> task = a.get_task("slow_task");
    CHECK(task == added);
    CHECK(task.name() == "slow_task");
    co_await test::yield(); // let it start and suspend

    co_await a.cancel_task("slow_task");
    CHECK(task.done());
    CHECK(task.cancelled());
    CHECK(cleaned_up);
    CHECK(test::live_frames == 0);

    // app.tasks still lists the cancelled task until purged.
    auto listed = a.tasks();
    REQUIRE(listed.size() == 1);
    CHECK(listed.front().name() == "slow_task");
    CHECK(a.purge_tasks() == 1);
    CHECK(a.tasks().empty());
    CHECK_FALSE(a.find_task("slow_task").has_value());
  });
}
