// "Creating Tasks", from Sanic's "Background tasks" page:
//
//   async def notify_server_started_after_five_seconds():
//       await asyncio.sleep(5)
//       print('Server successfully started!')
//
//   app.add_task(notify_server_started_after_five_seconds())
//
// In C++ the coroutine function returns an asio::awaitable<void>; calling it makes the coroutine
// object, which add_task schedules on the running App, as asyncio.create_task would. It is added
// from an after_server_start listener, so the App's loop is running, as in the seed.
//
// Usage: example_notify_after_start [delay_ms]   (default 5000, the seed's five seconds)
#include <taskyard/taskyard.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using taskyard::App;

namespace {

std::chrono::milliseconds delay{5000};

asio::awaitable<void> notify_server_started_after_five_seconds() {
  asio::steady_timer timer(co_await asio::this_coro::executor, delay);
  co_await timer.async_wait(asio::use_awaitable); // await asyncio.sleep(5)
  std::cout << "Server successfully started!\n";
}

// Not in the seed: stops the App once the task is done, so the example exits by itself.
asio::awaitable<void> stop_when_done(App& app, taskyard::Task<> task) {
  co_await task.wait();
  app.stop();
}

} // namespace

int main(int argc, char* argv[]) {
  if (argc > 1) delay = std::chrono::milliseconds(std::stoi(argv[1]));
  App app{"MyApp"};
  app.after_server_start([](App& app) {
    auto task = app.add_task(notify_server_started_after_five_seconds());
    app.add_task(stop_when_done(app, task));
  });
  app.run();
}
