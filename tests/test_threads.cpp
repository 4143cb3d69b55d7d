#include <taskyard/app.hpp>

#include "support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

// Thread safety: tasks added, cancelled, looked up and purged from foreign threads while the
// io_context runs on two threads; afterwards every task is accounted for. Catch2's assertions are
// not thread-safe, so the threads only record, and the main thread asserts once run() has returned.

#include <atomic>
#include <cstddef>
#include <exception>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {

/// True on the foreign threads of these tests: a task body that runs there ran inside add_task.
thread_local bool on_foreign_thread = false;

/// What the threads saw, to be asserted on the main thread.
struct observations {
  std::atomic<int> bodies{0};          // task bodies that started
  std::atomic<int> inline_runs{0};     // task bodies that ran on a foreign thread
  std::atomic<int> lookup_failures{0}; // a task's own name did not find it
  std::atomic<int> snapshot_errors{0}; // a tasks() snapshot with a duplicate or out of order
  std::atomic<int> cancel_refusals{0}; // cancel() of an unfinished task returned false
  std::atomic<int> unexpected{0};      // an exception in a foreign thread
  std::atomic<int> duplicates{0};      // duplicate_task_name thrown
  std::atomic<int> added{0};           // add_task calls that succeeded
  std::atomic<std::size_t> purged{0};  // purge_tasks() results summed
};

/// Sleeps until cancelled, or finishes after one suspension.
asio::awaitable<void> work(bool sleeps, observations& seen) {
  test::frame_probe probe;
  if (on_foreign_thread) ++seen.inline_runs;
  ++seen.bodies;
  if (sleeps)
    co_await test::suspend_forever();
  else
    co_await test::yield();
}

/// Parses "<prefix><index>"; -1 for another prefix.
long index_of(const std::string& name, char prefix) {
  if (name.size() < 2 || name[0] != prefix) return -1;
  return std::stol(name.substr(1));
}

/// A snapshot lists each name once, and each thread's tasks in the order that thread added them.
void check_snapshot(const std::vector<Task<>>& snapshot, observations& seen) {
  std::unordered_set<std::string> names;
  long last_a = -1, last_b = -1;
  for (const auto& t : snapshot) {
    if (!names.insert(t.name()).second) ++seen.snapshot_errors;
    if (long i = index_of(t.name(), 'a'); i >= 0) {
      if (i <= last_a) ++seen.snapshot_errors;
      last_a = i;
    }
    if (long i = index_of(t.name(), 'b'); i >= 0) {
      if (i <= last_b) ++seen.snapshot_errors;
      last_b = i;
    }
  }
}

/// "<prefix><i>", built without operator+ (g++ 12 at -O2 misreports "a" + to_string(i) as
/// -Wrestrict).
std::string indexed(std::string prefix, int i) {
  prefix.append(std::to_string(i));
  return prefix;
}

/// Runs `body` on a new thread marked foreign; an exception is counted, never lost.
template <typename Body>
std::thread foreign(observations& seen, Body body) {
  return std::thread([&seen, body]() mutable {
    on_foreign_thread = true;
    try {
      body();
    } catch (...) {
      ++seen.unexpected;
    }
  });
}

struct outcome_counts {
  std::size_t done = 0, cancelled = 0, succeeded = 0, failed = 0, forced = 0;
};

outcome_counts count(const std::vector<Task<>>& tasks) {
  outcome_counts n;
  for (const auto& t : tasks) {
    if (t.done()) ++n.done;
    if (t.cancelled()) ++n.cancelled;
    if (t.failed()) ++n.failed;
    if (t.forced()) ++n.forced;
    if (t.done() && !t.cancelled() && !t.failed()) ++n.succeeded;
  }
  return n;
}

} // namespace

TEST_CASE("20,000 tasks added, cancelled and looked up from two foreign threads are all "
          "accounted for",
          "[threads]") {
  REQUIRE(test::live_frames == 0);
  constexpr int per_thread = 10'000;
  observations seen;
  std::vector<Task<>> a_tasks, b_tasks, a_unnamed, b_unnamed; // each filled by one thread
  std::thread thread_a, thread_b, controller;
  {
    App app{"threads"};
    app.after_server_start([&](App& a) {
      thread_a = foreign(seen, [&] {
        for (int i = 0; i < per_thread; ++i) {
          const std::string name = indexed("a", i);
          // Even ones sleep until cancelled, odd ones finish quickly.
          Task<> t = a.add_task(work(i % 2 == 0, seen), name);
          a_tasks.push_back(t);
          if (i % 10 == 0)
            a_unnamed.push_back(a.add_task([&seen, i] { return work(i % 20 == 0, seen); }));
          auto found = a.find_task(name);
          if (!found || !(*found == t)) ++seen.lookup_failures;
          if (i % 7 == 0 && !(a.get_task(name) == t)) ++seen.lookup_failures;
          if (i % 3 == 0) {
            // The other thread's task of the same index may or may not be there yet.
            if (auto other = a.find_task(indexed("b", i)))
              if (other->name() != indexed("b", i)) ++seen.lookup_failures;
          }
          if (i % 1000 == 999) check_snapshot(a.tasks(), seen);
        }
      });
      thread_b = foreign(seen, [&] {
        for (int i = 0; i < per_thread; ++i) {
          const std::string name = indexed("b", i);
          Task<> t = a.add_task([&seen] { return work(true, seen); }, name);
          b_tasks.push_back(t);
          if (i % 10 == 5) b_unnamed.push_back(a.add_task(work(i % 20 == 5, seen)));
          // Every other one is cancelled: half by its handle, half looked up by name.
          if (i % 4 == 0 && !t.cancel("by handle")) ++seen.cancel_refusals;
          if (i % 4 == 2 && !a.get_task(name).cancel("by name")) ++seen.cancel_refusals;
          if (i % 3 == 0) {
            if (auto other = a.find_task(indexed("a", i)))
              if (other->name() != indexed("a", i)) ++seen.lookup_failures;
          }
          if (i % 5 == 0 && !(a.get_task(name) == t)) ++seen.lookup_failures;
          if (i % 1000 == 999) check_snapshot(a.tasks(), seen);
        }
      });
      controller = std::thread([&] {
        thread_a.join();
        thread_b.join();
        a.stop(); // the foreign threads are done before the stop sequence begins
      });
    });
    app.run({.threads = 2, .handle_signals = false});
    if (controller.joinable()) controller.join();

    CHECK(seen.unexpected == 0);
    CHECK(seen.inline_runs == 0);
    CHECK(seen.lookup_failures == 0);
    CHECK(seen.snapshot_errors == 0);
    CHECK(seen.cancel_refusals == 0);
    REQUIRE(a_tasks.size() == per_thread);
    REQUIRE(b_tasks.size() == per_thread);
    REQUIRE(a_unnamed.size() == per_thread / 10);
    REQUIRE(b_unnamed.size() == per_thread / 10);

    // Every task is accounted for: done, and either cancelled or succeeded.
    std::vector<Task<>> named = a_tasks;
    named.insert(named.end(), b_tasks.begin(), b_tasks.end());
    const outcome_counts n = count(named);
    CHECK(n.done == 2 * per_thread);
    CHECK(n.cancelled + n.succeeded == 2 * per_thread);
    CHECK(n.failed == 0);
    CHECK(n.forced == 0);
    // Those that slept until cancelled were cancelled, whoever did it.
    const outcome_counts b = count(b_tasks);
    CHECK(b.cancelled == per_thread);
    std::size_t sleepers_not_cancelled = 0;
    for (std::size_t i = 0; i < a_tasks.size(); i += 2)
      if (!a_tasks[i].cancelled()) ++sleepers_not_cancelled;
    CHECK(sleepers_not_cancelled == 0);

    std::vector<Task<>> unnamed = a_unnamed;
    unnamed.insert(unnamed.end(), b_unnamed.begin(), b_unnamed.end());
    const outcome_counts u = count(unnamed);
    CHECK(u.done == unnamed.size());
    CHECK(u.cancelled + u.succeeded == unnamed.size());
    CHECK(u.failed == 0);
    for (const auto& t : unnamed) CHECK(t.name().empty());

    // Each name registered exactly once; unnamed tasks are not listed.
    const auto listed = app.tasks();
    CHECK(listed.size() == 2 * per_thread);
    std::unordered_set<std::string> names;
    for (const auto& t : listed) names.insert(t.name());
    CHECK(names.size() == 2 * per_thread);
    std::size_t missing = 0;
    for (int i = 0; i < per_thread; ++i) {
      if (!names.contains(indexed("a", i))) ++missing;
      if (!names.contains(indexed("b", i))) ++missing;
    }
    CHECK(missing == 0);
    CHECK(seen.bodies <= 2 * per_thread + 2 * per_thread / 10);

    CHECK(app.purge_tasks() == 2 * per_thread);
    CHECK(app.tasks().empty());
    CHECK(app.purge_tasks() == 0);
    CHECK(test::live_frames == 0);
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("two threads racing for the same names: each name is taken exactly once",
          "[threads][names]") {
  REQUIRE(test::live_frames == 0);
  constexpr int names = 2'000;
  observations seen;
  std::vector<Task<>> won[2];
  std::thread racers[2], controller;
  {
    App app{"races"};
    // Started before run(): the adds race with the App starting (deferred, then started).
    for (int r = 0; r < 2; ++r) {
      racers[r] = foreign(seen, [&app, &seen, &won, r] {
        for (int i = 0; i < names; ++i) {
          try {
            won[r].push_back(app.add_task(work(true, seen), indexed("shared", i)));
            ++seen.added;
          } catch (const taskyard::duplicate_task_name& e) {
            if (e.name() != indexed("shared", i)) ++seen.unexpected;
            ++seen.duplicates;
          }
        }
      });
    }
    controller = std::thread([&] {
      for (auto& t : racers) t.join();
      app.stop();
    });
    app.run({.threads = 2, .handle_signals = false});
    controller.join();

    CHECK(seen.unexpected == 0);
    CHECK(seen.inline_runs == 0);
    CHECK(seen.added == names);
    CHECK(seen.duplicates == names);
    CHECK(won[0].size() + won[1].size() == names);
    const auto listed = app.tasks();
    CHECK(listed.size() == names);
    std::unordered_set<std::string> unique;
    for (const auto& t : listed) unique.insert(t.name());
    CHECK(unique.size() == names);
    // The registered task under each name is the one its winner got back.
    std::size_t mismatches = 0;
    for (const auto& list : won)
      for (const auto& t : list)
        if (!(app.get_task(t.name()) == t)) ++mismatches;
    CHECK(mismatches == 0);
    for (const auto& list : won) {
      const outcome_counts n = count(list);
      CHECK(n.done == list.size());
      CHECK(n.cancelled == list.size());
    }
  }
  CHECK(test::live_frames == 0);
}

TEST_CASE("purge_tasks from a foreign thread while tasks finish removes each task exactly once",
          "[threads][purge]") {
  REQUIRE(test::live_frames == 0);
  constexpr int tasks = 5'000;
  observations seen;
  std::vector<Task<>> added;
  std::atomic<bool> adding_done{false};
  std::thread adder, purger, controller;
  {
    App app{"purging"};
    app.after_server_start([&](App& a) {
      adder = foreign(seen, [&] {
        for (int i = 0; i < tasks; ++i)
          added.push_back(a.add_task(work(false, seen), indexed("q", i)));
        adding_done = true;
      });
      purger = foreign(seen, [&] {
        // Purges until the adder is done; what is left is purged by the main thread below.
        while (!adding_done) {
          seen.purged += a.purge_tasks();
          check_snapshot(a.tasks(), seen);
        }
      });
      controller = std::thread([&] {
        adder.join();
        purger.join();
        a.stop();
      });
    });
    app.run({.threads = 2, .handle_signals = false});
    if (controller.joinable()) controller.join();

    CHECK(seen.unexpected == 0);
    CHECK(seen.snapshot_errors == 0);
    REQUIRE(added.size() == tasks);
    const outcome_counts n = count(added);
    CHECK(n.done == tasks);
    CHECK(n.cancelled + n.succeeded == tasks);
    const std::size_t rest = app.purge_tasks();
    CHECK(seen.purged + rest == tasks);
    CHECK(app.tasks().empty());
  }
  CHECK(test::live_frames == 0);
}

namespace {

constexpr int hops = 200;

/// One of a task's children: increments the task's counter `hops` times, hopping through the
/// task's executor between increments, and counts the times it found another of the task's
/// handlers running.
asio::awaitable<void> hopping_child(int& counter, std::atomic<bool>& inside,
                                    std::atomic<int>& overlaps) {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < hops; ++i) {
    if (inside.exchange(true)) ++overlaps;
    ++counter; // not atomic: the task's strand orders every increment (ThreadSanitizer checks it)
    inside = false;
    co_await asio::post(ex, asio::use_awaitable);
  }
}

} // namespace

TEST_CASE("on an io_context run by several threads, each task runs on a strand of its own",
          "[threads]") {
  using namespace asio::experimental::awaitable_operators;
  constexpr int tasks = 8;
  std::atomic<int> overlaps{0}, not_on_strand{0};
  std::vector<int> counters(tasks, 0);
  std::vector<Task<>> started;
  {
    App app{"strands"};
    test::run_app(app,
                  [&](App& a) -> asio::awaitable<void> {
                    for (int t = 0; t < tasks; ++t) {
                      started.push_back(a.add_task([&, t]() -> asio::awaitable<void> {
                        auto ex = co_await asio::this_coro::executor;
                        const auto* task_ex =
                            ex.target<taskyard::detail::task_state_base::executor_type>();
                        if (task_ex == nullptr || !task_ex->on_strand()) ++not_on_strand;
                        // Four children on the task's own executor, awaited together: on two
                        // threads, only the task's strand keeps them from running at the same time.
                        std::atomic<bool> inside{false};
                        int& counter = counters[static_cast<std::size_t>(t)];
                        co_await (hopping_child(counter, inside, overlaps) &&
                                  hopping_child(counter, inside, overlaps) &&
                                  hopping_child(counter, inside, overlaps) &&
                                  hopping_child(counter, inside, overlaps));
                      }));
                    }
                    for (auto& task : started) co_await task.wait();
                  },
                  {.threads = 2, .handle_signals = false});
  }
  CHECK(not_on_strand == 0);
  CHECK(overlaps == 0);
  for (int counter : counters) CHECK(counter == 4 * hops);
  for (const auto& task : started) CHECK(task.done());
  CHECK(test::live_frames == 0);
}

TEST_CASE("on an io_context run by several threads, a lone waiter on the io_context's own executor "
          "resumes as the task it waits for ends, on that task's thread",
          "[threads][wait]") {
  constexpr std::size_t tasks = 64;
  std::vector<std::thread::id> ended_on(tasks), resumed_on(tasks);
  std::vector<char> saw_done(tasks, 0);
  std::atomic<std::size_t> resumed{0};
  {
    App app{"threads-wake"};
    test::run_app(app,
                  [&](App& a) -> asio::awaitable<void> {
                    test::signal go(a.io_context()), all_resumed(a.io_context());
                    for (std::size_t i = 0; i < tasks; ++i) {
                      auto task = a.add_task([&, i]() -> asio::awaitable<void> {
                        co_await go.wait();
                        ended_on[i] = std::this_thread::get_id();
                      });
                      // Spawned from a thread that runs the io_context, the waiter runs in place
                      // up to its wait: it is waiting before `go` lets the task end.
                      asio::co_spawn(
                          a.io_context(),
                          [&, i, task]() -> asio::awaitable<void> {
                            co_await task.wait();
                            resumed_on[i] = std::this_thread::get_id();
                            saw_done[i] = task.done() ? 1 : 0;
                            if (++resumed == tasks) all_resumed.notify();
                          },
                          asio::detached);
                    }
                    for (std::size_t i = 0; i < tasks; ++i) go.notify();
                    co_await all_resumed.wait();
                  },
                  {.threads = 4, .handle_signals = false});
  }
  REQUIRE(resumed == tasks);
  for (std::size_t i = 0; i < tasks; ++i) {
    CHECK(saw_done[i] == 1);
    CHECK(resumed_on[i] == ended_on[i]);
  }
}
