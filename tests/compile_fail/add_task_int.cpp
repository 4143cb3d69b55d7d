// Must not compile: an int is neither an awaitable nor a callable that makes one.
#include <taskyard/app.hpp>

int main() {
  taskyard::App app{"compile-fail"};
  app.add_task(42);
}
