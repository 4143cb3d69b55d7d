//
// tests/test_allocation_failure.cpp
//
// add_task when memory runs out: each allocation it makes through operator new fails in turn. The
// promise: add_task either throws std::bad_alloc and has added nothing (no name registered, no task
// listed, the source destroyed), or returns a task that is registered and finishes (failed with
// std::bad_alloc if it could not start); and the App goes on working. A task half-added would hold
// its name for good, and never run nor finish.
//
// With a strand per task, Asio may fail to schedule the strand after queueing the task's start on
// it, and then leaves the strand locked: the task fails, and its strand must go to no other task.
//
// This test program replaces operator new and delete: a countdown, armed on the calling thread
// only, makes the n-th allocation throw. It replaces aligned_alloc too, with which Asio allocates
// its coroutine frames: the launch of a task's coroutine must fail the task, not io_context::run.
//

#include <taskyard/app.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using taskyard::App;
using taskyard::Task;

namespace {
thread_local long countdown = -1; // allocations left before the one that fails; -1: none fails
thread_local bool failed = false; // an allocation failed since the countdown was armed
// Run as the allocation fails (the countdown is over by then), once.
thread_local void (*at_failure)(void*) = nullptr;
thread_local void* at_failure_arg = nullptr;
} // namespace

// Not inlined: g++ would otherwise see a `new` expression end in free() and warn of a mismatch.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (countdown >= 0 && countdown-- == 0) {
    failed = true;
    if (auto* f = std::exchange(at_failure, nullptr)) f(at_failure_arg);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// The nothrow form too, which the delete below frees (the default one would be the sanitizers').
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {
thread_local long aligned_countdown = -1; // as countdown, for aligned_alloc
} // namespace

// Asio allocates its coroutine frames, and the memory of cancellation handlers, with aligned_alloc
// (which std::free frees), not operator new: this one fails when its own countdown says so.
extern "C" [[gnu::noinline]] void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
  if (aligned_countdown >= 0 && aligned_countdown-- == 0) {
    failed = true;
    return nullptr;
  }
  void* p = nullptr;
  return posix_memalign(&p, align < sizeof(void*) ? sizeof(void*) : align, n) == 0 ? p : nullptr;
}

namespace {

/// Makes the n-th allocation on this thread fail (the first is 0) while it exists.
class failing_allocation {
public:
  explicit failing_allocation(long n) {
    countdown = n;
    failed = false;
  }
  ~failing_allocation() {
    countdown = -1;
    at_failure = nullptr;
  }
  failing_allocation(const failing_allocation&) = delete;
  failing_allocation& operator=(const failing_allocation&) = delete;
};

/// Makes the n-th aligned_alloc on this thread fail (the first is 0) while it exists.
class failing_aligned_allocation {
public:
  explicit failing_aligned_allocation(long n) {
    aligned_countdown = n;
    failed = false;
  }
  ~failing_aligned_allocation() { aligned_countdown = -1; }
  failing_aligned_allocation(const failing_aligned_allocation&) = delete;
  failing_aligned_allocation& operator=(const failing_aligned_allocation&) = delete;
};

/// Counts the frames that hold it as a parameter: from the coroutine's creation, not its start.
struct frame_count {
  int* live;
  explicit frame_count(int& n) : live(&n) { ++*live; }
  frame_count(const frame_count& other) : live(other.live) { ++*live; }
  frame_count& operator=(const frame_count&) = delete;
  ~frame_count() { --*live; }
};

asio::awaitable<int> counted(frame_count) { co_return 7; }

enum class when { before_start, running };

struct setup {
  bool one_thread; // on an io_context made for one thread (no strands), or on the App's own
  bool named;
  when added;
  bool name_of_finished = false; // the name is held by a finished task, which this one takes over
};

/// What at_failure runs to cancel the task named "job" as the allocation fails, as another thread
/// could at that moment (and so only where add_task holds no lock of the App's).
bool job_cancelled = false;
void cancel_job(void* app) {
  if (auto task = static_cast<App*>(app)->find_task("job"))
    job_cancelled = task->cancel("as it failed");
}

/// Adds a task whose frame `live` counts. (Asio allocates coroutine frames with aligned_alloc, not
/// operator new: making one never fails here.)
Task<int> add_counted(App& a, int& live, const std::string& name) {
  auto source = counted(frame_count(live));
  return name.empty() ? a.add_task(std::move(source)) : a.add_task(std::move(source), name);
}

/// Adds one task with the n-th allocation of add_task failing (and, with `cancel`, the task
/// cancelled then), then checks what the App holds and that it still works. Returns false if
/// add_task made fewer than n + 1 allocations.
bool add_with_failure(const setup& s, long n, bool cancel = false) {
  int live = 0;
  bool injected = false;
  bool threw = false;
  std::optional<Task<int>> task;
  const std::string name = s.named ? "job" : "";
  INFO("allocation " << n << " fails");

  auto add = [&](App& a) {
    // The blocks this thread keeps would serve add_task without operator new.
    taskyard::detail::block_cache::release_this_thread();
    failing_allocation fail(n);
    if (cancel) {
      at_failure = cancel_job;
      at_failure_arg = &a;
      job_cancelled = false;
    }
    try {
      task = add_counted(a, live, name);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    injected = failed;
  };

  auto body = [&](App& a) -> asio::awaitable<void> {
    std::optional<Task<int>> earlier;
    if (s.name_of_finished) {
      earlier = add_counted(a, live, name);
      co_await earlier->wait();
    }
    if (s.added == when::running) add(a);
    if (threw) {
      CHECK(live == 0); // the source went with the exception
      CHECK_FALSE(task);
      if (earlier) {
        CHECK(a.tasks() == std::vector<Task<>>{*earlier}); // still holding the name
      } else {
        CHECK(a.tasks().empty());
        if (s.named) CHECK_FALSE(a.find_task(name));
      }
    } else {
      REQUIRE(task);
      if (s.named) CHECK(a.get_task(name) == Task<>(*task));
      bool out_of_memory = false;
      bool cancelled = false;
      try {
        const int value = co_await task->wait();
        CHECK(value == 7);
      } catch (const std::bad_alloc&) {
        out_of_memory = true; // it could not start
      } catch (const boost::system::system_error& e) {
        cancelled = test::is_aborted(e);
      }
      CHECK(task->done());
      CHECK(task->failed() == out_of_memory);
      CHECK(task->cancelled() == cancelled);
      CHECK(cancelled == cancel); // a cancellation wins over the failure that follows it
      if (cancel) CHECK(job_cancelled);
    }
    // The App goes on: the name, if any, is free or reusable, and new tasks run, one after
    // another, more of them than the pool holds switches (and strands), so that each of its
    // switches is handed out again.
    a.purge_tasks();
    const std::size_t switches =
        asio::use_service<taskyard::detail::gate_pool>(a.io_context()).size();
    std::size_t ran = 0;
    for (std::size_t i = 0; i <= switches; ++i) {
      Task<int> next = add_counted(a, live, name);
      if (co_await next.wait() == 7) ++ran;
    }
    CHECK(ran == switches + 1);
    a.stop();
  };

  std::optional<asio::io_context> ioc;
  std::optional<App> app;
  if (s.one_thread) {
    ioc.emplace(1);
    app.emplace("allocation-failure", *ioc);
  } else {
    app.emplace("allocation-failure");
  }
  if (s.added == when::before_start) add(*app);
  app->after_server_start([&body](App& a) { return body(a); });
  if (s.one_thread) {
    asio::co_spawn(*ioc, app->serve(), asio::detached);
    ioc->run();
  } else {
    app->run({.threads = 1, .handle_signals = false});
  }
  app.reset();
  ioc.reset();
  CHECK(live == 0); // no frame outlives the io_context, whatever happened to it
  return injected;
}

/// Makes each allocation of add_task fail in turn; returns how many it makes.
long each_failure(const setup& s) {
  long n = 0;
  while (add_with_failure(s, n)) {
    ++n;
    REQUIRE(n < 64); // add_task makes a handful of allocations, not this many
  }
  CHECK(n > 0); // at least the state's
  return n;
}

void each_setup(when added) {
  for (bool one_thread : {false, true}) {
    for (bool named : {false, true}) {
      CAPTURE(one_thread, named);
      each_failure({one_thread, named, added});
    }
  }
}

} // namespace

TEST_CASE("add_task with each of its allocations failing in turn, on a running App",
          "[allocation]") {
  each_setup(when::running);
}

TEST_CASE("add_task with each of its allocations failing in turn, before the App starts",
          "[allocation]") {
  each_setup(when::before_start);
}

TEST_CASE("add_task taking over a finished task's name, its allocations failing in turn",
          "[allocation]") {
  for (bool one_thread : {false, true}) {
    CAPTURE(one_thread);
    each_failure({one_thread, true, when::running, true});
  }
}

TEST_CASE("the start of a task failing to be posted as the task is cancelled", "[allocation]") {
  // With a strand per task, add_task's last two allocations post the task's start: the operation,
  // then the strand's scheduling, whose failure leaves the strand locked. A cancellation then (no
  // lock of the App's is held) finishes the task, but must not hand its switch, and with it the
  // locked strand, back to the pool.
  const setup s{false, true, when::running};
  const long n = each_failure(s);
  REQUIRE(n >= 2);
  CHECK(add_with_failure(s, n - 2, true));
  CHECK(add_with_failure(s, n - 1, true));
}

TEST_CASE("a task whose launch cannot allocate fails with std::bad_alloc: each of the start's "
          "aligned allocations failing in turn",
          "[allocation]") {
  // The start of a task on an io_context made for one thread is one handler: it takes the task's
  // switch and launches its coroutine (its cancellation state, the frames Asio allocates). Each
  // allocation failing there fails the task, and nothing comes out of io_context::run.
  bool failed_somewhere = false;
  for (long n = 0;; ++n) {
    INFO("aligned allocation " << n << " fails");
    asio::io_context ioc{1};
    int live = 0;
    bool hit = false;
    {
      App app{"launch", ioc};
      asio::co_spawn(ioc, app.serve(), asio::detached);
      ioc.poll(); // the lifecycle runs until it waits for stop()
      Task<int> t = app.add_task(counted(frame_count(live)));
      {
        const failing_aligned_allocation failing(n);
        REQUIRE_NOTHROW(ioc.poll_one()); // the start
        hit = failed;
      }
      ioc.poll();
      REQUIRE(t.done());
      if (hit) {
        failed_somewhere = true;
        CHECK_THROWS_AS(t.result(), std::bad_alloc);
      } else {
        CHECK(t.result() == 7);
      }
      app.stop();
      ioc.run();
    }
    CHECK(live == 0); // the coroutine's frame, made before, destroyed all the same
    if (!hit) break;
  }
  CHECK(failed_somewhere); // the launch allocates on a new io_context: at least the frame
}
