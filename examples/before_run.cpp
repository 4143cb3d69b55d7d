// "Adding tasks before app.run", from Sanic's "Background tasks" page:
//
//   async def slow_work(...):
//      ...
//
//   async def even_slower(num):
//      ...
//
//   app = Sanic(...)
//   app.add_task(slow_work) # Note: we are passing the callable and not coroutine object
//                           # `slow_work(...)`
//   app.run(...)
//   app.add_task(even_slower(10)) # ... or we can call the function and pass the coroutine.
//   app.run(...)
//
// plus the tip: bind arguments to slow_work with functools.partial. Here all three tasks are added
// before a single app.run(): the callable is invoked when the App starts (once per worker), the
// coroutine object only starts then, and std::bind_front plays functools.partial.
//
// Usage: example_before_run [delay_ms]   (default 5000; even_slower takes twice as long)
#include <taskyard/taskyard.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;

namespace {

std::chrono::milliseconds delay{5000};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> slow_work() {
  co_await sleep_for(delay);
  std::cout << "slow_work done\n";
}

asio::awaitable<void> even_slower(int num) {
  co_await sleep_for(2 * delay);
  std::cout << "even_slower(" << num << ") done\n";
}

asio::awaitable<void> slow_work_with_args(std::string what) {
  co_await sleep_for(delay);
  std::cout << "slow_work_with_args(" << what << ") done\n";
}

// Not in the seed: stops the App once every task is done, so the example exits by itself.
asio::awaitable<void> stop_when_done(App& app, std::vector<taskyard::Task<>> tasks) {
  for (auto& task : tasks) co_await task.wait();
  app.stop();
}

} // namespace

int main(int argc, char* argv[]) {
  if (argc > 1) delay = std::chrono::milliseconds(std::stoi(argv[1]));
  App app{"MyApp"};
  auto a = app.add_task(slow_work);       // the callable, not the coroutine object slow_work()
  auto b = app.add_task(even_slower(10)); // ... or call the function and pass the coroutine
  auto c = app.add_task(std::bind_front(slow_work_with_args, "report")); // functools.partial
  app.add_task(stop_when_done(app, {a, b, c}));
  app.run();
}
