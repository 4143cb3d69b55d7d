// Helpers shared by the tests: a live-frame counter, a way to run a test body inside a running App,
// and suspension points that never complete on their own (so tests wait on events, never on time).
#ifndef TASKYARD_TESTS_SUPPORT_HPP
#define TASKYARD_TESTS_SUPPORT_HPP

#include <taskyard/taskyard.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <exception>
#include <functional>

namespace test {

namespace asio = boost::asio;

/// Counts the coroutine frames that hold a probe: construct one as a local in a task's coroutine.
inline std::atomic<int> live_frames{0};

struct frame_probe {
  frame_probe() { live_frames.fetch_add(1); }
  ~frame_probe() { live_frames.fetch_sub(1); }
  frame_probe(const frame_probe&) = delete;
  frame_probe& operator=(const frame_probe&) = delete;
};

/// True if the error is a cancellation (what a cancelled task sees at its suspension point).
inline bool is_aborted(const boost::system::system_error& e) {
  return e.code() == asio::error::operation_aborted;
}

/// True if the exception is a cancellation.
inline bool is_aborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& error) {
    return is_aborted(error);
  } catch (...) {
    return false;
  }
}

/// Suspends until cancelled: a timer that never expires.
inline asio::awaitable<void> suspend_forever() {
  asio::steady_timer timer(co_await asio::this_coro::executor,
                           asio::steady_timer::time_point::max());
  co_await timer.async_wait(asio::use_awaitable);
}

/// The error a wait for `t` ended with: empty if it succeeded, the system_error's code otherwise
/// (operation_aborted for a cancelled task). Waits for a task whatever its outcome.
inline asio::awaitable<boost::system::error_code> wait_error(taskyard::Task<> t) {
  try {
    co_await t.wait();
  } catch (const boost::system::system_error& e) {
    co_return e.code();
  }
  co_return boost::system::error_code{};
}

/// Yields to the io_context once (a suspension point that completes at once).
inline asio::awaitable<void> yield() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

/// A thread-safe signal a coroutine can wait for: notify() from anywhere, co_await wait().
class signal {
public:
  explicit signal(asio::io_context& ioc) : channel_(ioc, 1024) {}
  void notify() { channel_.try_send(boost::system::error_code{}); }
  asio::awaitable<void> wait() { co_await channel_.async_receive(asio::use_awaitable); }

private:
  asio::experimental::concurrent_channel<void(boost::system::error_code)> channel_;
};

/// Runs `body(app)` as the App's after_server_start listener, then stops the App; returns once
/// run() has returned. An exception (a failed REQUIRE included) propagates out of run().
inline void run_app(taskyard::App& app, std::function<asio::awaitable<void>(taskyard::App&)> body,
                    taskyard::run_options options = {.threads = 1, .handle_signals = false}) {
  app.after_server_start([body = std::move(body)](taskyard::App& a) -> asio::awaitable<void> {
    co_await body(a);
    a.stop();
  });
  app.run(options);
}

} // namespace test

#endif // TASKYARD_TESTS_SUPPORT_HPP
