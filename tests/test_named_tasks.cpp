#include <taskyard/app.hpp>
// Named tasks: add_task under a name, get_task / find_task, empty and duplicate names, replacement,
// name reuse, tasks() and its order, purge_tasks, auto_purge, typed access, naming before run.

#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/system/system_error.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

asio::awaitable<int> forty_two() { co_return 42; }

asio::awaitable<void> fail(std::string what) {
  co_await test::yield();
  throw std::runtime_error(what);
}

/// The error a wait for `t` ended with: empty if it succeeded, the system_error's code otherwise.
asio::awaitable<boost::system::error_code> wait_error(Task<> t) {
  try {
    co_await t.wait();
  } catch (const boost::system::system_error& e) {
    co_return e.code();
  }
  co_return boost::system::error_code{};
}

/// The message of the exception a wait for `t` ended with; empty if it succeeded.
asio::awaitable<std::string> wait_failure(Task<> t) {
  try {
    co_await t.wait();
  } catch (const std::exception& e) {
    co_return e.what();
  }
  co_return std::string{};
}

std::vector<std::string> names_of(const std::vector<Task<>>& tasks) {
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t.name());
  return names;
}

} // namespace

TEST_CASE("add_task under a name registers it: get_task returns that same task", "[named]") {
  App app{"named"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> answer = a.add_task(forty_two, "answer");
    Task<int> other = a.add_task(forty_two(), "other");
    CHECK(answer.name() == "answer");
    CHECK(other.name() == "other");

    Task<> found = a.get_task("answer");
    CHECK(found == answer);
    CHECK(a.get_task("answer") == found); // every lookup yields the same task
    CHECK_FALSE(found == other);
    CHECK(a.get_task("other") == other);

    co_await found.wait();
    // One task behind all handles: the one found reports what the one returned does.
    CHECK(answer.done());
    CHECK(answer.result() == 42);
    auto other_value = co_await other.wait();
    CHECK(other_value == 42);
  });
}

TEST_CASE("get_task on an unknown name throws task_not_found naming it", "[named][errors]") {
  App app{"unknown"};
  // Before the App runs, with nothing registered...
  CHECK_THROWS_AS(app.get_task("ghost"), taskyard::task_not_found);
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    // ...and while it runs, with another name registered.
    Task<> present = a.add_task(test::suspend_forever(), "present");
    try {
      (void)a.get_task("ghost");
      FAIL("get_task of an unknown name did not throw");
    } catch (const taskyard::task_not_found& e) {
      CHECK_THAT(e.what(), Catch::Contains("'ghost'"));
      CHECK(e.name() == "ghost");
    }
    CHECK_THROWS_AS(a.get_task("ghost"), taskyard::error); // part of taskyard's hierarchy
    CHECK_THROWS_AS(a.get_task("presen"), taskyard::task_not_found);
    CHECK(a.get_task("present") == present);
    co_await a.cancel_task("present");
  });
}

TEST_CASE("find_task returns nothing for an unknown name and the task otherwise", "[named]") {
  App app{"find"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    CHECK_FALSE(a.find_task("absent").has_value());
    Task<> sleeper = a.add_task(test::suspend_forever(), "sleeper");
    std::optional<Task<>> found = a.find_task("sleeper");
    REQUIRE(found.has_value());
    CHECK(*found == sleeper);
    CHECK_FALSE(a.find_task("absent").has_value());
    CHECK_FALSE(a.find_task("sleeper2").has_value());
    co_await a.cancel_task("sleeper");
    // A finished task is still found until it is purged.
    REQUIRE(a.find_task("sleeper").has_value());
    CHECK(*a.find_task("sleeper") == sleeper);
    CHECK(a.purge_tasks() == 1);
    CHECK_FALSE(a.find_task("sleeper").has_value());
  });
}

TEST_CASE("an empty name is rejected by add_task, get_task, find_task and cancel_task",
          "[named][errors]") {
  App app{"empty-name"};
  int invoked = 0;
  auto counted = [&invoked]() -> asio::awaitable<int> {
    ++invoked;
    co_return 1;
  };
  // Before run as well as during it.
  CHECK_THROWS_AS(app.add_task(counted, ""), taskyard::invalid_task_name);
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    try {
      a.add_task(counted, "");
      FAIL("add_task with an empty name did not throw");
    } catch (const taskyard::invalid_task_name& e) {
      CHECK_THAT(e.what(), Catch::Contains("empty"));
    }
    CHECK_THROWS_AS(a.add_task(forty_two(), ""), taskyard::invalid_task_name);
    CHECK_THROWS_AS(a.add_task(counted, "", taskyard::name_conflict::replace),
                    taskyard::invalid_task_name);
    CHECK_THROWS_AS(a.get_task(""), taskyard::invalid_task_name);
    CHECK_THROWS_AS(a.get_task<int>(""), taskyard::invalid_task_name);
    CHECK_THROWS_AS(a.find_task(""), taskyard::invalid_task_name);

    bool cancel_threw = false;
    try {
      co_await a.cancel_task("");
    } catch (const taskyard::invalid_task_name&) {
      cancel_threw = true;
    }
    CHECK(cancel_threw);
    // An empty name is misuse, not a missing task: ignoring missing tasks does not hide it.
    bool ignore_threw = false;
    try {
      co_await a.cancel_task("", "", taskyard::missing_task::ignore);
    } catch (const taskyard::invalid_task_name&) {
      ignore_threw = true;
    }
    CHECK(ignore_threw);
    CHECK(a.tasks().empty());

    // The App still works: a task added properly afterwards runs.
    Task<int> fine = a.add_task(counted, "fine");
    auto fine_value = co_await fine.wait();
    CHECK(fine_value == 1);
  });
  CHECK(invoked == 1); // only "fine": no rejected source was ever invoked
}

TEST_CASE("a name held by a running task is refused: the first task is untouched",
          "[named][errors]") {
  App app{"duplicate"};
  int second_invoked = 0;
  Task<> first;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    first = a.add_task(test::suspend_forever(), "worker");
    co_await test::yield();
    try {
      a.add_task(
          [&second_invoked]() -> asio::awaitable<void> {
            ++second_invoked;
            co_return;
          },
          "worker");
      FAIL("adding a second task named 'worker' did not throw");
    } catch (const taskyard::duplicate_task_name& e) {
      CHECK_THAT(e.what(), Catch::Contains("'worker'"));
      CHECK(e.name() == "worker");
    }
    // Explicitly asking for the default behaves the same.
    CHECK_THROWS_AS(a.add_task(forty_two(), "worker", taskyard::name_conflict::error),
                    taskyard::duplicate_task_name);

    // The first task is still the one registered, still running, not cancelled.
    CHECK(a.get_task("worker") == first);
    REQUIRE(a.tasks().size() == 1);
    CHECK(a.tasks().front() == first);
    CHECK_FALSE(first.done());
    CHECK(first.cancel_message().empty());

    auto cancel_returned = co_await a.cancel_task("worker", "test over");
    CHECK(cancel_returned);
    CHECK(first.cancelled());
    CHECK(first.cancel_message() == "test over");
  });
  CHECK(second_invoked == 0);
}

TEST_CASE("name_conflict::replace cancels the older task and registers the new one", "[named]") {
  App app{"replace"};
  bool old_saw_cancellation = false;
  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    Task<> old = a.add_task(
        [&]() -> asio::awaitable<void> {
          try {
            co_await test::suspend_forever();
          } catch (const boost::system::system_error& e) {
            old_saw_cancellation = test::is_aborted(e);
            throw;
          }
        },
        "feed");
    co_await test::yield(); // let it start and suspend
    Task<> replacement =
        a.add_task(test::suspend_forever(), "feed", taskyard::name_conflict::replace);
    // Replacing does not wait for the older task.
    CHECK_FALSE(old.done());
    CHECK(a.get_task("feed") == replacement);
    CHECK(a.tasks() == std::vector<Task<>>{replacement});

    auto old_error = co_await wait_error(old);
    CHECK(old_error == asio::error::operation_aborted);
    CHECK(old_saw_cancellation);
    CHECK(old.done());
    CHECK(old.cancelled());
    CHECK_THAT(old.cancel_message(), Catch::Contains("replaced") && Catch::Contains("'feed'"));

    // The new task is untouched by the replacement.
    CHECK_FALSE(replacement.done());
    CHECK(replacement.cancel_message().empty());
    auto cancel_returned = co_await a.cancel_task("feed", "done with it");
    CHECK(cancel_returned);
    CHECK(replacement.cancelled());

    // Replacing a finished task cancels nothing: its outcome and message stay as they were.
    Task<int> third = a.add_task(forty_two(), "feed", taskyard::name_conflict::replace);
    auto third_value = co_await third.wait();
    CHECK(third_value == 42);
    CHECK_FALSE(third.cancelled());
    CHECK(replacement.cancel_message() == "done with it");
    CHECK(a.get_task("feed") == third);
  });
}

TEST_CASE("a finished task's name can be reused at once", "[named]") {
  App app{"reuse"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> first = a.add_task(forty_two(), "job");
    Task<> other = a.add_task(test::suspend_forever(), "other");
    auto first_value = co_await first.wait();
    CHECK(first_value == 42);

    // Succeeded: reusable under the default name_conflict::error.
    Task<> second = a.add_task(test::suspend_forever(), "job");
    CHECK(a.get_task("job") == second);
    CHECK_FALSE(a.get_task("job") == first);
    CHECK(first.result() == 42); // the old handle still reports its own task
    // The new task is registered last, and the finished one is gone from the list.
    CHECK(names_of(a.tasks()) == std::vector<std::string>{"other", "job"});
    CHECK(a.tasks().back() == second);

    // Cancelled: reusable too.
    auto cancel_returned = co_await a.cancel_task("job");
    CHECK(cancel_returned);
    Task<int> third = a.add_task(forty_two(), "job");
    CHECK(a.get_task("job") == third);
    auto third_value = co_await third.wait();
    CHECK(third_value == 42);

    // Failed: reusable too.
    Task<> failing = a.add_task(fail("boom"), "job");
    auto failing_failure = co_await wait_failure(failing);
    CHECK(failing_failure == "boom");
    Task<int> fourth = a.add_task(forty_two(), "job");
    CHECK(a.get_task("job") == fourth);
    auto fourth_value = co_await fourth.wait();
    CHECK(fourth_value == 42);
    CHECK(a.tasks().size() == 2);
    co_await a.cancel_task("other");
  });
}

TEST_CASE("a task that takes a finished task's name over does not depend on the earlier task",
          "[named]") {
  App app{"takeover"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    {
      Task<> first = a.add_task([]() -> asio::awaitable<void> { co_return; }, "job");
      co_await first.wait();
      CHECK(first.done());
    }
    // Only the registry holds the finished task now: taking its name over releases it, and the
    // tasks added next (of the same result type) may get its memory. The name must still be found,
    // and this task under it.
    Task<> second = a.add_task(test::suspend_forever(), "job");
    std::vector<Task<>> others;
    for (int i = 0; i < 8; ++i)
      others.push_back(a.add_task(test::suspend_forever(), "other-" + std::to_string(i)));
    CHECK(a.get_task("job") == second);
    CHECK(a.tasks().size() == 9);
    auto cancel_returned = co_await a.cancel_task("job");
    CHECK(cancel_returned);
    CHECK(second.cancelled());
    CHECK(a.purge_tasks() == 1);
    CHECK_FALSE(a.find_task("job"));
    for (auto& other : others) co_await a.cancel_task(other.name());
  });
}

TEST_CASE("tasks() lists the named tasks in registration order, and no unnamed one", "[named]") {
  App app{"order"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    CHECK(a.tasks().empty());
    Task<> c = a.add_task(test::suspend_forever(), "c");
    Task<> unnamed = a.add_task(test::suspend_forever());
    Task<> alpha = a.add_task(test::suspend_forever(), "a");
    Task<int> b = a.add_task(forty_two, "b");
    a.add_task(test::suspend_forever()); // another unnamed one, handle dropped

    auto listed = a.tasks();
    REQUIRE(listed.size() == 3);
    CHECK(listed[0] == c);
    CHECK(listed[1] == alpha);
    CHECK(listed[2] == b);
    CHECK(names_of(listed) == std::vector<std::string>{"c", "a", "b"});
    CHECK(unnamed.name().empty());

    // A snapshot: later changes do not alter one taken before.
    Task<> d = a.add_task(test::suspend_forever(), "d");
    CHECK(listed.size() == 3);
    CHECK(names_of(a.tasks()) == std::vector<std::string>{"c", "a", "b", "d"});

    // Finishing does not reorder.
    auto b_value = co_await b.wait();
    CHECK(b_value == 42);
    auto cancel_returned = co_await a.cancel_task("c");
    CHECK(cancel_returned);
    CHECK(names_of(a.tasks()) == std::vector<std::string>{"c", "a", "b", "d"});
  });
}

TEST_CASE("finished tasks stay listed until purge_tasks, which removes done, cancelled and "
          "failed ones",
          "[named][purge]") {
  App app{"purge"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    CHECK(a.purge_tasks() == 0); // nothing registered

    Task<int> ok = a.add_task(forty_two(), "ok");
    Task<> running = a.add_task(test::suspend_forever(), "running");
    Task<> cancelled = a.add_task(test::suspend_forever(), "cancelled");
    Task<> failed = a.add_task(fail("broken"), "failed");
    Task<> unnamed = a.add_task(forty_two()); // not registered: never counted

    auto ok_value = co_await ok.wait();
    CHECK(ok_value == 42);
    auto cancel_returned = co_await a.cancel_task("cancelled");
    CHECK(cancel_returned);
    auto failed_failure = co_await wait_failure(failed);
    CHECK(failed_failure == "broken");
    co_await unnamed.wait();

    // Finished tasks are still listed and found.
    CHECK(names_of(a.tasks()) == std::vector<std::string>{"ok", "running", "cancelled", "failed"});
    CHECK(a.get_task("ok") == ok);
    CHECK(a.get_task("cancelled") == cancelled);
    CHECK(a.get_task("failed") == failed);

    CHECK(a.purge_tasks() == 3);
    CHECK(a.tasks() == std::vector<Task<>>{running});
    CHECK_THROWS_AS(a.get_task("ok"), taskyard::task_not_found);
    CHECK_FALSE(a.find_task("cancelled").has_value());
    CHECK_FALSE(a.find_task("failed").has_value());
    CHECK(a.get_task("running") == running);
    CHECK_FALSE(running.done());

    // Handles outlive purging and keep reporting the outcome.
    CHECK(ok.result() == 42);
    CHECK(cancelled.cancelled());
    CHECK(failed.failed());

    CHECK(a.purge_tasks() == 0); // already purged; the running one stays
    auto cancel_returned2 = co_await a.cancel_task("running");
    CHECK(cancel_returned2);
    CHECK(a.purge_tasks() == 1);
    CHECK(a.tasks().empty());
  });
}

TEST_CASE("with config().auto_purge each named task is removed as it finishes", "[named][purge]") {
  App app{"auto-purge"};
  app.config().auto_purge = true;
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> ok = a.add_task(forty_two(), "ok");
    Task<> running = a.add_task(test::suspend_forever(), "running");
    Task<> cancelled = a.add_task(test::suspend_forever(), "cancelled");
    Task<> failed = a.add_task(fail("broken"), "failed");
    CHECK(a.tasks().size() == 4); // registered while they run

    auto ok_value = co_await ok.wait();
    CHECK(ok_value == 42);
    CHECK_FALSE(a.find_task("ok").has_value());
    auto cancel_returned = co_await a.cancel_task("cancelled");
    CHECK(cancel_returned);
    CHECK_FALSE(a.find_task("cancelled").has_value());
    auto failed_failure = co_await wait_failure(failed);
    CHECK(failed_failure == "broken");
    CHECK_FALSE(a.find_task("failed").has_value());

    CHECK(a.tasks() == std::vector<Task<>>{running});
    CHECK(a.purge_tasks() == 0); // nothing left to purge
    // The handles still report what happened.
    CHECK(ok.result() == 42);
    CHECK(cancelled.cancelled());
    CHECK(failed.failed());

    // The name is free again.
    Task<int> again = a.add_task(forty_two(), "ok");
    auto again_value = co_await again.wait();
    CHECK(again_value == 42);
    auto cancel_returned2 = co_await a.cancel_task("running");
    CHECK(cancel_returned2);
    CHECK(a.tasks().empty());
  });
}

TEST_CASE("get_task<T> and find_task<T> give typed access: another type is task_type_mismatch",
          "[named][typed]") {
  App app{"typed"};
  test::run_app(app, [](App& a) -> asio::awaitable<void> {
    Task<int> answer = a.add_task(forty_two(), "answer");
    Task<> nothing = a.add_task(test::suspend_forever(), "nothing");

    Task<int> typed = a.get_task<int>("answer");
    CHECK(typed == answer);
    auto typed_value = co_await typed.wait();
    CHECK(typed_value == 42);
    CHECK(a.get_task<int>("answer").result() == 42);
    std::optional<Task<int>> found = a.find_task<int>("answer");
    REQUIRE(found.has_value());
    CHECK(found->result() == 42);
    CHECK_FALSE(a.find_task<int>("missing").has_value());
    CHECK_THROWS_AS(a.get_task<int>("missing"), taskyard::task_not_found);

    try {
      (void)a.get_task<std::string>("answer");
      FAIL("get_task<std::string> of an int task did not throw");
    } catch (const taskyard::task_type_mismatch& e) {
      CHECK_THAT(e.what(), Catch::Contains("'answer'"));
      CHECK(e.name() == "answer");
    }
    CHECK_THROWS_AS(a.find_task<long>("answer"), taskyard::task_type_mismatch);
    CHECK_THROWS_AS(a.get_task<int>("nothing"), taskyard::task_type_mismatch);
    // Task<> is any task.
    CHECK(a.get_task<void>("answer") == answer);
    CHECK(a.get_task<void>("nothing") == nothing);
    co_await a.cancel_task("nothing");
  });
}

TEST_CASE("a task may be named before run: names are enforced before run too",
          "[named][before_run]") {
  App app{"early"};
  int replaced_invoked = 0;
  Task<int> early = app.add_task(forty_two, "early");
  Task<int> doomed = app.add_task(
      [&replaced_invoked]() -> asio::awaitable<int> {
        ++replaced_invoked;
        co_return 1;
      },
      "doomed");

  CHECK(early.name() == "early");
  CHECK(app.get_task("early") == early);
  CHECK(app.get_task<int>("early") == early);
  REQUIRE(app.find_task("early").has_value());
  CHECK(names_of(app.tasks()) == std::vector<std::string>{"early", "doomed"});
  CHECK_FALSE(early.done());

  // A task that has not started yet still holds its name.
  CHECK_THROWS_AS(app.add_task(forty_two, "early"), taskyard::duplicate_task_name);
  CHECK(app.get_task("early") == early);

  // Replacing a task that has not started cancels it at once: it never runs.
  Task<int> replacement = app.add_task([]() -> asio::awaitable<int> { co_return 2; }, "doomed",
                                       taskyard::name_conflict::replace);
  CHECK(doomed.done());
  CHECK(doomed.cancelled());
  CHECK(app.get_task("doomed") == replacement);

  test::run_app(app, [&](App& a) -> asio::awaitable<void> {
    auto early_value = co_await early.wait();
    CHECK(early_value == 42);
    auto replacement_value = co_await replacement.wait();
    CHECK(replacement_value == 2);
    auto doomed_error = co_await wait_error(doomed);
    CHECK(doomed_error == asio::error::operation_aborted);
    CHECK(a.get_task("early") == early);
    CHECK(names_of(a.tasks()) == std::vector<std::string>{"early", "doomed"});
  });
  CHECK(replaced_invoked == 0);
}
