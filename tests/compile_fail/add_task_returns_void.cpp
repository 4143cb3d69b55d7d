// Must not compile: the callable is invocable with the App but returns void, not an awaitable.
#include <taskyard/app.hpp>

int main() {
  taskyard::App app{"compile-fail"};
  app.add_task([](taskyard::App&) {});
}
