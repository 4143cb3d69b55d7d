// Must not compile: the callable wants an int, which add_task cannot supply.
#include <taskyard/app.hpp>

#include <boost/asio/awaitable.hpp>

boost::asio::awaitable<void> needs_a_number(int) { co_return; }

int main() {
  taskyard::App app{"compile-fail"};
  app.add_task(needs_a_number);
}
