#include <taskyard/app.hpp>
// Failures: a task that throws keeps its exception for wait(), exception() and result(); a failure
// nobody observed goes to the App's exception handler, exactly once; nothing stops the io_context.

#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <exception>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

/// A failure with a payload, to check that what is rethrown is the task's own exception.
struct boom : std::runtime_error {
  boom(const std::string& what, int c) : std::runtime_error(what), code(c) {}
  int code;
};

asio::awaitable<int> forty_two() { co_return 42; }

asio::awaitable<void> explode(std::string what, int code) {
  co_await test::yield();
  throw boom(what, code);
}

/// Suspends until cancelled, then fails while handling the cancellation. App::cancel_task waits
/// for it to finish without observing its failure (as wait() would).
asio::awaitable<void> fail_when_cancelled(test::signal& suspended, std::string what) {
  try {
    suspended.notify();
    co_await test::suspend_forever();
  } catch (const boost::system::system_error&) {}
  throw boom(what, 1);
}

/// Adds a named task that fails, and returns once it has finished: nobody has observed the failure.
asio::awaitable<Task<>> fail_unobserved(App& app, std::string name) {
  test::signal suspended(app.io_context());
  Task<> t = app.add_task(fail_when_cancelled(suspended, name + " failed"), name);
  co_await suspended.wait();
  co_await app.cancel_task(name);
  co_return t;
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "?";
  }
}

/// What the exception handler was called with.
struct report {
  std::string name;
  std::string what;
  bool operator==(const report&) const = default;
};

std::ostream& operator<<(std::ostream& os, const report& r) {
  return os << "{'" << r.name << "', '" << r.what << "'}";
}

/// Redirects std::cerr into a string while alive.
class cerr_capture {
public:
  cerr_capture() : old_(std::cerr.rdbuf(out_.rdbuf())) {}
  ~cerr_capture() { std::cerr.rdbuf(old_); }
  cerr_capture(const cerr_capture&) = delete;
  cerr_capture& operator=(const cerr_capture&) = delete;
  [[nodiscard]] std::string text() const { return out_.str(); }

private:
  std::ostringstream out_;
  std::streambuf* old_;
};

} // namespace

TEST_CASE("a task that throws is done and failed: wait() rethrows its own exception",
          "[failures]") {
  std::vector<report> reports;
  App app{"throws"};
  app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
    reports.push_back({std::string(name), what_of(e)});
  };
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<> t = a.add_task(explode("disk full", 28), "writer");

    int code = 0;
    std::string what;
    try {
      co_await t.wait();
    } catch (const boom& e) {
      code = e.code;
      what = e.what();
    }
    CHECK(code == 28);
    CHECK(what == "disk full");
    CHECK(t.done());
    CHECK(t.failed());
    CHECK_FALSE(t.cancelled());

    // Every wait rethrows it again, as does result().
    int again = 0;
    try {
      co_await t.wait();
    } catch (const boom& e) {
      again = e.code;
    }
    CHECK(again == 28);
    CHECK_THROWS_AS(t.result(), boom);
    CHECK_THROWS_WITH(t.result(), "disk full");

    // exception() returns it.
    std::exception_ptr e = t.exception();
    REQUIRE(e != nullptr);
    CHECK(e == t.exception());
    try {
      std::rethrow_exception(e);
    } catch (const boom& b) {
      CHECK(b.code == 28);
      CHECK(std::string(b.what()) == "disk full");
    }

    // Typed tasks too.
    Task<int> typed = a.add_task([]() -> asio::awaitable<int> {
      co_await test::yield();
      throw std::logic_error("no value");
    });
    std::string typed_what;
    try {
      (void)co_await typed.wait();
    } catch (const std::logic_error& le) {
      typed_what = le.what();
    }
    CHECK(typed_what == "no value");
    CHECK(typed.failed());
    CHECK_THROWS_AS(typed.result(), std::logic_error);
  });
  CHECK(reports.empty()); // observed: never reported
}

TEST_CASE("exception() is null for a task that succeeded or was cancelled", "[failures]") {
  App app{"no-exception"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> ok = a.add_task(forty_two());
    auto ok_value = co_await ok.wait();
    CHECK(ok_value == 42);
    CHECK(ok.exception() == nullptr);
    CHECK_FALSE(ok.failed());

    Task<> cancelled = a.add_task(test::suspend_forever(), "cancelled");
    co_await a.cancel_task("cancelled");
    CHECK(cancelled.exception() == nullptr);
    CHECK_FALSE(cancelled.failed());
  });
}

TEST_CASE("an unobserved failure of an unnamed task whose handle is dropped is reported once, "
          "when it finishes",
          "[failures][handler]") {
  std::vector<report> reports;
  {
    App app{"unnamed-lost"};
    test::signal reported(app.io_context());
    app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
      reports.push_back({std::string(name), what_of(e)});
      reported.notify();
    };
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      a.add_task(explode("lost in the void", 1)); // handle dropped at once
      co_await reported.wait();
      CHECK(reports == std::vector<report>{{"", "lost in the void"}});
    });
    CHECK(reports.size() == 1);
  }
  // Exactly once, even after the App is gone.
  CHECK(reports == std::vector<report>{{"", "lost in the void"}});
}

TEST_CASE("an unobserved failure of a named task is reported when it is purged, not before",
          "[failures][handler]") {
  std::vector<report> reports;
  {
    App app{"named-lost"};
    app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
      reports.push_back({std::string(name), what_of(e)});
    };
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      co_await fail_unobserved(a, "lost"); // handle dropped
      REQUIRE(a.get_task("lost").done());
      CHECK(a.get_task("lost").failed());
      CHECK(reports.empty()); // still registered: someone may still look at it
      CHECK(a.purge_tasks() == 1);
      CHECK(reports == std::vector<report>{{"lost", "lost failed"}});
    });
  }
  CHECK(reports == std::vector<report>{{"lost", "lost failed"}});
}

TEST_CASE("an exception handler called by a purge may use the App, and purge again",
          "[failures][handler]") {
  std::vector<report> reports;
  std::vector<std::size_t> purged_inside;
  std::size_t added = 0;
  App app{"purge-in-handler"};
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    co_await fail_unobserved(a, "first");
    co_await fail_unobserved(a, "second");
    a.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
      reports.push_back({std::string(name), what_of(e)});
      // The two failed tasks are unregistered already; a task cancelled before it could start is
      // finished at once, and this purge removes it while the outer one still holds its own.
      auto pending = a.add_task(forty_two, "added-" + std::to_string(added++));
      CHECK(pending.cancel());
      purged_inside.push_back(a.purge_tasks());
    };
    CHECK(a.purge_tasks() == 2);
    const std::vector<report> both{{"first", "first failed"}, {"second", "second failed"}};
    CHECK(std::is_permutation(reports.begin(), reports.end(), both.begin(), both.end()));
    CHECK(purged_inside == std::vector<std::size_t>{1, 1});
    CHECK(a.tasks().empty());
    // And the purges after it still release what they remove.
    co_await fail_unobserved(a, "third");
    CHECK(a.purge_tasks() == 1);
    CHECK(reports.size() == 3);
    CHECK(purged_inside == std::vector<std::size_t>{1, 1, 1});
    CHECK(a.tasks().empty());
  });
}

TEST_CASE("an unobserved failure is reported when the last handle to it is dropped",
          "[failures][handler]") {
  std::vector<report> reports;
  App app{"handles"};
  app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
    reports.push_back({std::string(name), what_of(e)});
  };
  Task<> held;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    held = co_await fail_unobserved(a, "held");
    Task<> copy = held;
    CHECK(held.failed());
    CHECK(a.purge_tasks() == 1);
    CHECK(reports.empty()); // handles are held: the failure may still be observed
    copy = Task<>{};
    CHECK(reports.empty()); // one is still held
  });
  CHECK(reports.empty()); // the App has stopped, but the handle is still held
  held = Task<>{};
  CHECK(reports == std::vector<report>{{"held", "held failed"}});
}

TEST_CASE("reusing the name of a failed task nobody observed reports its failure",
          "[failures][handler]") {
  std::vector<report> reports;
  App app{"reuse-failed"};
  app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
    reports.push_back({std::string(name), what_of(e)});
  };
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    co_await fail_unobserved(a, "job"); // handle dropped
    CHECK(reports.empty());
    // The new task takes the name: the failed one is unregistered, and nothing refers to it any
    // more.
    Task<int> next = a.add_task(forty_two, "job");
    CHECK(reports == std::vector<report>{{"job", "job failed"}});
    auto next_value = co_await next.wait();
    CHECK(next_value == 42);
  });
  CHECK(reports.size() == 1);
}

TEST_CASE("a failure observed by wait(), exception() or result() is never reported",
          "[failures][handler]") {
  std::vector<report> reports;
  {
    App app{"observed"};
    app.config().exception_handler = [&](std::string_view name, std::exception_ptr e) {
      reports.push_back({std::string(name), what_of(e)});
    };
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      {
        Task<> by_wait = a.add_task(explode("seen", 1), "by-wait");
        bool caught = false;
        try {
          co_await by_wait.wait();
        } catch (const boom&) {
          caught = true;
        }
        CHECK(caught);

        Task<> by_exception = co_await fail_unobserved(a, "by-exception");
        CHECK(by_exception.exception() != nullptr);

        Task<> by_result = co_await fail_unobserved(a, "by-result");
        CHECK_THROWS_AS(by_result.result(), boom);

        // An unnamed one observed through wait(), whose handle then goes.
        Task<> unnamed = a.add_task(explode("seen too", 2));
        try {
          co_await unnamed.wait();
        } catch (const boom&) {}

        // The control: nobody looks at this one.
        co_await fail_unobserved(a, "control");
        CHECK(a.purge_tasks() == 4);
      } // every handle dropped here
      CHECK(reports == std::vector<report>{{"control", "control failed"}});
    });
  }
  CHECK(reports == std::vector<report>{{"control", "control failed"}});
}

TEST_CASE("an exception handler that throws stops nothing", "[failures][handler]") {
  int calls = 0;
  cerr_capture captured;
  {
    App app{"bad-handler"};
    test::signal called(app.io_context());
    app.config().exception_handler = [&](std::string_view, std::exception_ptr) {
      ++calls;
      called.notify();
      throw std::runtime_error("the handler broke");
    };
    test::run_app(app, [&](App& a) -> asio::awaitable<void> {
      a.add_task(explode("first", 1)); // unobserved, handle dropped
      co_await called.wait();
      // The next task still runs.
      Task<int> next = a.add_task(forty_two, "next");
      auto next_value = co_await next.wait();
      CHECK(next_value == 42);
      // And the handler is still called for the next failure.
      a.add_task(explode("second", 2));
      co_await called.wait();
    });
  }
  std::string text = captured.text();
  CHECK(calls == 2);
  CHECK_THAT(text, Catch::Contains("'bad-handler'") && Catch::Contains("threw"));
}

TEST_CASE("a task's exception does not stop the io_context: other tasks run on and complete",
          "[failures]") {
  App app{"keeps-running"};
  test::signal go(app.io_context());
  std::vector<std::string> order;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<int> survivor = a.add_task(
        [&]() -> asio::awaitable<int> {
          co_await go.wait();
          order.push_back("survivor");
          co_return 5;
        },
        "survivor");
    Task<> bad = a.add_task(
        [&]() -> asio::awaitable<void> {
          co_await test::yield();
          order.push_back("bad");
          throw boom("bad", 1);
        },
        "bad");
    Task<> unnamed = a.add_task([&]() -> asio::awaitable<void> {
      co_await test::yield();
      order.push_back("unnamed");
      throw boom("unnamed", 2);
    });
    bool caught = false;
    try {
      co_await bad.wait();
    } catch (const boom&) {
      caught = true;
    }
    CHECK(caught);
    int unnamed_code = 0;
    try {
      co_await unnamed.wait();
    } catch (const boom& e) {
      unnamed_code = e.code;
    }
    CHECK(unnamed_code == 2);
    CHECK_FALSE(a.io_context().stopped());
    CHECK_FALSE(survivor.done());

    go.notify();
    auto survivor_value = co_await survivor.wait();
    CHECK(survivor_value == 5);
    Task<int> later = a.add_task(forty_two);
    auto later_value = co_await later.wait();
    CHECK(later_value == 42);
  });
  REQUIRE(order.size() == 3);
  CHECK(order.back() == "survivor");
  CHECK(std::count(order.begin(), order.end(), "bad") == 1);
  CHECK(std::count(order.begin(), order.end(), "unnamed") == 1);
}

TEST_CASE("a task's exception does not stop an io_context run by several threads",
          "[failures][threads]") {
  App app{"keeps-running-mt"};
  test::signal go(app.io_context());
  std::atomic<int> failures_caught{0};
  int survivor_result = 0;
  bool io_stopped_midway = true;
  test::run_app(app,
                [&](App& a) -> asio::awaitable<void> {
                  Task<int> survivor = a.add_task(
                      [&]() -> asio::awaitable<int> {
                        co_await go.wait();
                        co_return 5;
                      },
                      "survivor");
                  std::vector<Task<>> bad;
                  for (int i = 0; i < 8; ++i) bad.push_back(a.add_task(explode("bad", i)));
                  for (auto& t : bad) {
                    try {
                      co_await t.wait();
                    } catch (const boom&) {
                      ++failures_caught;
                    }
                  }
                  io_stopped_midway = a.io_context().stopped();
                  go.notify();
                  survivor_result = co_await survivor.wait();
                },
                {.threads = 2, .handle_signals = false});
  CHECK(failures_caught.load() == 8);
  CHECK_FALSE(io_stopped_midway);
  CHECK(survivor_result == 5);
}

TEST_CASE("the default exception handler prints one line on stderr naming the task",
          "[failures][handler]") {
  App app{"default-handler"};
  std::string text;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    co_await fail_unobserved(a, "reporter");
    cerr_capture captured;
    CHECK(a.purge_tasks() == 1); // the last reference goes: reported here
    text = captured.text();
  });
  CHECK_THAT(text, Catch::Contains("'reporter'") && Catch::Contains("reporter failed"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
}
