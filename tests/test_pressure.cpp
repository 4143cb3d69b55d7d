#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

// Shutdown under pressure: 100,000 suspended named tasks, of which 1% ignore cancellation and 1%
// take 50 ms to clean up after it. shutdown_tasks(1s) must cancel them all, wait for the slow
// clean-ups, give up on exactly the tasks that ignore cancellation, destroy every frame, and
// return within the timeout plus a margin; on one thread and on two.
//
// Timing is not asserted in taskyard's tests, except here: that shutdown_tasks returns soon after
// its timeout is the requirement itself. The margin is generous (2 s over the 1 s timeout; 20 s in
// a sanitized build, whose code runs several times slower) and TASKYARD_PRESSURE_MARGIN_MS sets
// it. The file is compiled optimised in every preset and runs alone (tests/CMakeLists.txt): the
// cancellations of 100,000 tasks must all have been handled well within the 1 s, or the tasks that
// clean up slowly would rightly be given up on too.
//
// TASKYARD_PRESSURE_TASKS sets the number of tasks (default 100000; at least 100, 1% of them ignore
// cancellation and 1% clean up slowly). The asan and tsan test presets run 10,000 and 5,000, for
// the same reason: sanitized, cancelling 100,000 tasks alone takes longer than the timeout.

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using taskyard::App;
using taskyard::Task;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::stoull(value) : fallback;
}

enum class behaviour { cooperative, ignores, slow_cleanup };

/// What the tasks report.
struct pressure_log {
  explicit pressure_log(asio::io_context& ioc, int tasks) : all_started(ioc), expected(tasks) {}
  test::signal all_started; // notified once, by the last task to start
  const int expected;
  std::atomic<int> started{0};
  std::atomic<int> aborts_ignored{0};
  std::atomic<int> cleanups_finished{0};
};

asio::awaitable<void> pressured(pressure_log& log, behaviour b) {
  test::frame_probe probe;
  if (log.started.fetch_add(1) + 1 == log.expected) log.all_started.notify();
  switch (b) {
  case behaviour::cooperative: {
    // Ends when cancelled, without an exception: most tasks of a server wait on I/O that reports
    // cancellation as an error code. It counts as cancelled all the same.
    asio::steady_timer forever(co_await asio::this_coro::executor,
                               asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await forever.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    break;
  }
  case behaviour::ignores:
    for (;;) { // only being given up on ends it: it never resumes after that
      try {
        co_await test::suspend_forever();
      } catch (const boost::system::system_error& e) {
        if (!test::is_aborted(e)) throw;
        ++log.aborts_ignored;
      }
      co_await asio::this_coro::reset_cancellation_state();
    }
  case behaviour::slow_cleanup: {
    try {
      co_await test::suspend_forever();
    } catch (const boost::system::system_error& e) {
      if (!test::is_aborted(e)) throw;
    }
    co_await asio::this_coro::reset_cancellation_state();
    asio::steady_timer cleanup(co_await asio::this_coro::executor, 50ms);
    co_await cleanup.async_wait(asio::use_awaitable);
    ++log.cleanups_finished; // then returns: cancelled, since its cancellation was requested
    break;
  }
  }
}

void shutdown_under_pressure(std::size_t threads) {
  const int tasks =
      static_cast<int>(std::max<std::uint64_t>(100, env_or("TASKYARD_PRESSURE_TASKS", 100000)));
  const int each = tasks / 100; // ignoring, and cleaning up slowly
  const auto margin =
      std::chrono::milliseconds(env_or("TASKYARD_PRESSURE_MARGIN_MS", sanitized ? 20000 : 2000));
  const auto timeout = 1s;
  std::cout << "pressure: " << tasks << " tasks on " << threads << " thread(s)\n";

  REQUIRE(test::live_frames == 0);
  {
    App app{"pressure"};
    pressure_log log{app.io_context(), tasks};
    test::run_app(app,
                  [&](App& a) -> asio::awaitable<void> {
                    std::vector<Task<>> handles;
                    std::vector<std::string> ignorers;
                    handles.reserve(static_cast<std::size_t>(tasks));
                    for (int i = 0; i < tasks; ++i) {
                      const behaviour b = i % 100 == 0   ? behaviour::ignores
                                          : i % 100 == 1 ? behaviour::slow_cleanup
                                                         : behaviour::cooperative;
                      std::string name = "task-" + std::to_string(i);
                      if (b == behaviour::ignores) ignorers.push_back(name);
                      handles.push_back(a.add_task(pressured(log, b), std::move(name)));
                    }
                    co_await log.all_started.wait();
                    REQUIRE(test::live_frames == tasks);

                    const auto begin = std::chrono::steady_clock::now();
                    const std::clock_t cpu_begin = std::clock();
                    taskyard::shutdown_result result = co_await a.shutdown_tasks(timeout);
                    const auto took = std::chrono::steady_clock::now() - begin;
                    // The CPU time tells a slow shutdown from a busy machine.
                    std::cout << "pressure: shutdown_tasks took "
                              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms, " << (std::clock() - cpu_begin) * 1000 / CLOCKS_PER_SEC
                              << " ms of CPU\n";

                    // Within the timeout plus the margin (see the top of this file).
                    INFO("shutdown_tasks took "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                         << " ms");
                    CHECK(took < timeout + margin);
                    CHECK(result.cancelled == static_cast<std::size_t>(tasks));
                    std::sort(result.forced.begin(), result.forced.end());
                    std::sort(ignorers.begin(), ignorers.end());
                    CHECK(result.forced.size() == static_cast<std::size_t>(each));
                    CHECK(result.forced == ignorers);
                    CHECK(test::live_frames == 0); // right after shutdown_tasks returns
                    CHECK(log.aborts_ignored == each);
                    CHECK(log.cleanups_finished == each);

                    int forced = 0, cancelled = 0, failed = 0;
                    for (const auto& t : handles) {
                      forced += t.forced() ? 1 : 0;
                      cancelled += t.done() && t.cancelled() ? 1 : 0;
                      failed += t.failed() ? 1 : 0;
                    }
                    CHECK(forced == each);
                    CHECK(cancelled == tasks);
                    CHECK(failed == 0);
                    CHECK(a.tasks().size() == static_cast<std::size_t>(tasks));
                    CHECK(a.purge_tasks() == static_cast<std::size_t>(tasks));
                    CHECK(a.tasks().empty());
                  },
                  {.threads = threads, .handle_signals = false});
  }
  CHECK(test::live_frames == 0);
}

} // namespace

TEST_CASE("shutdown_tasks under pressure: 100,000 tasks, 1,000 ignoring cancellation and 1,000 "
          "cleaning up slowly",
          "[pressure][shutdown][forced]") {
  shutdown_under_pressure(1);
}

TEST_CASE("shutdown_tasks under pressure with the io_context on two threads",
          "[pressure][shutdown][forced][threads]") {
  shutdown_under_pressure(2);
}
