// "Creating Tasks", from Sanic's "Background tasks" page: the caller passes the App.
//
//   async def explicit_inject(app):
//       await asyncio.sleep(5)
//       print(app.name)
//
//   app.add_task(explicit_inject(app))
//
// In C++ explicit_inject(app) makes the coroutine object (an asio::awaitable<void>, which does not
// run until the App starts it) and add_task schedules it on the running App, as in the seed.
//
// Usage: example_explicit_inject [delay_ms]   (default 5000, the seed's five seconds)
#include <taskyard/taskyard.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using taskyard::App;

namespace {

std::chrono::milliseconds delay{5000};

asio::awaitable<void> explicit_inject(App& app) {
  asio::steady_timer timer(co_await asio::this_coro::executor, delay);
  co_await timer.async_wait(asio::use_awaitable); // await asyncio.sleep(5)
  std::cout << app.name() << '\n';
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
    auto task = app.add_task(explicit_inject(app)); // the coroutine object, made by the caller
    app.add_task(stop_when_done(app, task));
  });
  app.run();
}
