// Worker processes, from Sanic's "Background tasks" page ("Adding tasks before app.run"):
//
//   app.add_task(slow_work) # Note: we are passing the callable and not coroutine object ...
//   app.run(...)
//
// "When a callable is passed, Sanic creates the task on each worker (not in the main process).
//  To add a task to the main process only, consider adding it with @app.main_process_start.
//  Note: the workers will not start until that task is done."
//
// Here app.run({.workers = N}) forks N worker processes. slow_work is invoked in each of them and
// prints which worker it runs in; warm_up, added in main_process_start, runs once, in the main
// process, and the workers are forked only once it is done. Ctrl-C (SIGINT) or SIGTERM to the main
// process stops every worker through its stop sequence.
//
// Usage: example_workers [workers]   (default 4)
#include <taskyard/taskyard.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using taskyard::App;

namespace {

// Each process writes whole lines and flushes them (std::endl): several processes share stdout.
asio::awaitable<void> slow_work(App& app) {
  const std::size_t worker = *app.worker_index();
  std::cout << "worker " << worker << ": slow_work started" << std::endl;
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
  try {
    co_await timer.async_wait(asio::use_awaitable);
  } catch (const boost::system::system_error&) {
    std::cout << "worker " << worker << ": slow_work cancelled" << std::endl;
    throw;
  }
}

asio::awaitable<void> warm_up() {
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
  co_await timer.async_wait(asio::use_awaitable);
  std::cout << "main process: warm_up done" << std::endl;
}

} // namespace

int main(int argc, char* argv[]) {
  const std::size_t workers = argc > 1 ? std::stoul(argv[1]) : 4;
  App app{"MyApp"};
  app.add_task(slow_work); // the callable: invoked in each worker
  app.main_process_start([](App& a) { a.add_task(warm_up()); }); // the main process only
  app.after_server_stop(
      [](App& a) { std::cout << "worker " << *a.worker_index() << ": stopped" << std::endl; });
  const auto result = app.run({.workers = workers, .threads = 2});
  std::cout << "main process: " << result.workers.size() << " workers stopped"
            << (result.clean() ? " cleanly" : ", not all cleanly") << std::endl;
  return result.exit_code();
}
