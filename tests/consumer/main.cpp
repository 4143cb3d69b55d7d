// Adds a task, runs the App until the task is done, and prints its result.
#include <taskyard/taskyard.hpp>

#include <iostream>

boost::asio::awaitable<int> answer() { co_return 42; }

boost::asio::awaitable<void> stop_when_done(taskyard::App& app, taskyard::Task<int> task) {
  co_await task.wait();
  app.stop();
}

int main() {
  taskyard::App app{"consumer"};
  taskyard::Task<int> task = app.add_task(answer(), "answer");
  app.add_task(stop_when_done(app, task));
  app.run();
  std::cout << "taskyard " << TASKYARD_VERSION_MAJOR << '.' << TASKYARD_VERSION_MINOR << '.'
            << TASKYARD_VERSION_PATCH << ": " << task.result() << '\n';
}
