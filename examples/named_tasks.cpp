// "Named tasks", from Sanic's "Background tasks" page:
//
//   app.add_task(slow_work, name="slow_task")
//   task = app.get_task("slow_task")
//   await app.cancel_task("slow_task")
//   app.purge_tasks()
//
// and: all registered tasks are in app.tasks; purge_tasks clears out the completed or cancelled
// ones. In C++ the name is add_task's second argument, app.tasks() is a snapshot in registration
// order, and purge_tasks() returns how many tasks it removed. cancel_task is a coroutine, so it is
// called from a task (manage) and co_awaited: it returns once slow_task has finished.
//
// Usage: example_named_tasks [delay_ms]   (default 5000: how long slow_work would take)
#include <taskyard/taskyard.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using taskyard::App;

namespace {

std::chrono::milliseconds delay{5000};

asio::awaitable<void> slow_work() {
  asio::steady_timer timer(co_await asio::this_coro::executor, delay);
  co_await timer.async_wait(asio::use_awaitable);
  std::cout << "slow_work done\n"; // not reached: the task is cancelled first
}

asio::awaitable<void> manage(App& app) {
  taskyard::Task<> task = app.get_task("slow_task");
  std::cout << task.name() << " done: " << task.done() << '\n';
  co_await app.cancel_task("slow_task");
  std::cout << task.name() << " cancelled: " << task.cancelled() << '\n';
  std::cout << "tasks:";
  for (const auto& t : app.tasks()) std::cout << ' ' << t.name();
  std::cout << "\npurged: " << app.purge_tasks() << '\n';
  std::cout << "tasks left: " << app.tasks().size() << '\n';
  app.stop(); // not in the seed: the example exits by itself
}

} // namespace

int main(int argc, char* argv[]) {
  if (argc > 1) delay = std::chrono::milliseconds(std::stoi(argv[1]));
  std::cout << std::boolalpha;
  App app{"MyApp"};
  app.add_task(slow_work, "slow_task");
  app.add_task(manage); // unnamed, so not listed by app.tasks()
  app.run();
}
