//
// bench/bench_tasks.cpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// taskyard against what one would write by hand on raw Asio, workload by workload, in one binary so
// that each ratio is taken in one run. Every workload W<n> has BM_W<n>_taskyard and its baseline.
// Both sides run on the same kind of io_context, made for one thread (`io_context{1}`, Asio's
// concurrency hint) and driven by this one thread: a single-threaded server. On such an io_context
// taskyard runs tasks without a strand each; BM_W1_taskyard_strand measures the App with an
// io_context of its own, which any number of threads may run, and so a strand per task.
//
// Counters: tasks_per_iter (divide the CPU time by it for ns per task), allocs_per_task and
// bytes_per_task (heap allocations while the workload ran, per task), and for the memory workloads
// live_bytes_per_task, rss_bytes_per_task, peak_heap_mb.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#include <taskyard/taskyard.hpp>

#include "alloc_counter.hpp"

#include <benchmark/benchmark.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
using namespace taskyard_bench;

namespace {

// ------------------------------------------------------------------------------------------------
// The coroutines both sides run

std::size_t ended = 0; // coroutines that have run to their end (or thrown out of it)

asio::awaitable<void> noop() {
  ++ended;
  co_return;
}

/// Waits on a timer until cancelled; the wait throws operation_aborted.
asio::awaitable<void> sleeper() {
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
  try {
    co_await timer.async_wait(asio::use_awaitable);
  } catch (...) {
    ++ended;
    throw;
  }
  ++ended;
}

/// As sleeper, with a wait that does not throw: the coroutine returns once cancelled.
asio::awaitable<void> quiet_sleeper() {
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
  auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  benchmark::DoNotOptimize(ec);
  ++ended;
}

/// A server's task in miniature: gives the io_context back a few times, then ends.
constexpr int w6_yields = 4;
asio::awaitable<void> connection() {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < w6_yields; ++i) co_await asio::post(ex, asio::use_awaitable);
  ++ended;
}

// ------------------------------------------------------------------------------------------------
// Helpers

std::string make_name(char prefix, std::size_t i) {
  char buf[24];
  buf[0] = prefix;
  auto r = std::to_chars(buf + 1, buf + sizeof buf, i);
  return std::string(buf, r.ptr);
}

std::vector<std::string> make_names(std::size_t n) {
  std::vector<std::string> names;
  names.reserve(n);
  for (std::size_t i = 0; i < n; ++i) names.push_back(make_name('t', i));
  return names;
}

/// Runs every ready handler (and those they make ready).
void drain(asio::io_context& ioc) {
  if (ioc.stopped()) ioc.restart();
  ioc.poll();
}

/// An io_context made for one thread, as both sides use.
struct one_thread_context {
  asio::io_context ioc{1};
};

/// An App on an io_context made for one thread, started (serve() spawned) so that add_task starts
/// tasks; or, with `own`, an App with an io_context of its own (default-constructed).
struct started_app : one_thread_context {
  std::unique_ptr<taskyard::App> owner;
  taskyard::App& app;
  asio::io_context& ioc;

  explicit started_app(bool own = false)
      : owner(own ? std::make_unique<taskyard::App>("bench")
                  : std::make_unique<taskyard::App>("bench", one_thread_context::ioc)),
        app(*owner), ioc(app.io_context()) {
    asio::co_spawn(ioc, app.serve(), asio::detached);
    drain(ioc);
  }
  started_app(const started_app&) = delete;
  started_app& operator=(const started_app&) = delete;
  ~started_app() {
    app.stop();
    if (ioc.stopped()) ioc.restart();
    ioc.run_for(std::chrono::seconds(30));
    // The next benchmark, a baseline perhaps, starts with none of taskyard's cached blocks held.
    taskyard::detail::block_cache::release_this_thread();
  }
};

/// The registry one writes by hand: name -> entry with the task's cancellation signal and outcome,
/// entries purged once their task has completed. Single-threaded, like the io_context it serves.
struct hand_registry {
  struct entry {
    asio::cancellation_signal signal;
    bool done = false;
    std::exception_ptr error;
    asio::steady_timer* waiter = nullptr; // set while cancel_and_wait waits for the task's end
  };

  asio::io_context& ioc;
  std::unordered_map<std::string, entry> tasks;
  std::vector<std::string_view> finished; // keys of completed entries, for purge_finished

  template <typename Awaitable>
  void add(std::string name, Awaitable a) {
    auto [it, inserted] = tasks.try_emplace(std::move(name));
    if (!inserted && !it->second.done) throw std::runtime_error("duplicate task name");
    entry& e = it->second;
    e.done = false;
    std::string_view key = it->first;
    asio::co_spawn(
        ioc, std::move(a),
        asio::bind_cancellation_slot(e.signal.slot(), [this, &e, key](std::exception_ptr error) {
          e.done = true;
          e.error = std::move(error);
          finished.push_back(key);
          if (e.waiter != nullptr) e.waiter->cancel();
        }));
  }

  bool cancel(const std::string& name) {
    auto it = tasks.find(name);
    if (it == tasks.end()) return false;
    if (!it->second.done) it->second.signal.emit(asio::cancellation_type::terminal);
    return true;
  }

  /// cancel, then wait until the task has ended: what App::cancel_task does, written by hand, with
  /// Asio's usual condition variable (a timer that never expires, cancelled by the task's end).
  asio::awaitable<bool> cancel_and_wait(const std::string& name) {
    auto it = tasks.find(name);
    if (it == tasks.end()) co_return false;
    entry& e = it->second;
    if (!e.done) e.signal.emit(asio::cancellation_type::terminal);
    if (!e.done) {
      asio::steady_timer ended(ioc, asio::steady_timer::time_point::max());
      e.waiter = &ended;
      auto [ec] = co_await ended.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)ec;
      e.waiter = nullptr;
    }
    co_return true;
  }

  std::size_t purge() {
    std::size_t n = 0;
    for (auto key : finished) n += tasks.erase(std::string(key));
    finished.clear();
    return n;
  }
};

/// Heap allocations from construction to finish(), per task; tasks_per_iter for the script.
class alloc_meter {
public:
  alloc_meter(benchmark::State& state, std::size_t tasks_per_iter)
      : state_(state), per_iter_(tasks_per_iter), start_(alloc_now()) {}

  void finish() {
    const auto now = alloc_now();
    const double tasks = static_cast<double>(state_.iterations()) * static_cast<double>(per_iter_);
    state_.counters["tasks_per_iter"] = static_cast<double>(per_iter_);
    state_.counters["allocs_per_task"] =
        static_cast<double>(now.allocations - start_.allocations) / tasks;
    state_.counters["bytes_per_task"] = static_cast<double>(now.bytes - start_.bytes) / tasks;
    state_.SetItemsProcessed(static_cast<std::int64_t>(tasks));
  }

private:
  benchmark::State& state_;
  std::size_t per_iter_;
  alloc_totals start_;
};

void expect_ended(benchmark::State& state, std::size_t expected) {
  if (ended != expected) state.SkipWithError("not every task ran to its end");
}

constexpr std::size_t batch = 1000;

// ------------------------------------------------------------------------------------------------
// W1: unnamed task, added and run to completion

void run_w1_taskyard(benchmark::State& state, bool strand_per_task) {
  started_app s(strand_per_task);
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) s.app.add_task(noop());
    drain(s.ioc);
  }
  meter.finish();
  expect_ended(state, state.iterations() * batch);
}

// What any task that can be cancelled costs on raw Asio: co_spawn with a cancellation signal bound.
void BM_W1_co_spawn_signal(benchmark::State& state) {
  asio::io_context ioc{1};
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    std::vector<asio::cancellation_signal> signals(batch); // one per task, as a task's state has
    for (std::size_t i = 0; i < batch; ++i)
      asio::co_spawn(ioc, noop(), asio::bind_cancellation_slot(signals[i].slot(), asio::detached));
    drain(ioc);
  }
  meter.finish();
  expect_ended(state, state.iterations() * batch);
}

void BM_W1_taskyard(benchmark::State& state) { run_w1_taskyard(state, false); }

void BM_W1_taskyard_strand(benchmark::State& state) { run_w1_taskyard(state, true); }

void BM_W1_co_spawn(benchmark::State& state) {
  asio::io_context ioc{1};
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) asio::co_spawn(ioc, noop(), asio::detached);
    drain(ioc);
  }
  meter.finish();
  expect_ended(state, state.iterations() * batch);
}

// ------------------------------------------------------------------------------------------------
// W2: named task, added, run to completion, purged

void BM_W2_taskyard(benchmark::State& state) {
  started_app s;
  const auto names = make_names(batch);
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) s.app.add_task(noop(), names[i]);
    drain(s.ioc);
    s.app.purge_tasks();
  }
  meter.finish();
  expect_ended(state, state.iterations() * batch);
}

void BM_W2_registry(benchmark::State& state) {
  asio::io_context ioc{1};
  hand_registry r{ioc, {}, {}};
  const auto names = make_names(batch);
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) r.add(names[i], noop());
    drain(ioc);
    r.purge();
  }
  meter.finish();
  expect_ended(state, state.iterations() * batch);
}

// ------------------------------------------------------------------------------------------------
// W3: memory held by a suspended named task (waiting on a timer)

constexpr std::size_t w3_tasks = 20000;

struct memory_sample {
  alloc_totals heap;
  std::size_t rss;
};

/// The heap in use: taskyard's cache of freed blocks is emptied first (see block_cache.hpp), so
/// that the blocks it holds count neither as used nor, taken from it, as not allocated.
memory_sample sample_memory() {
  taskyard::detail::block_cache::release_this_thread();
  trim_heap();
  return {alloc_now(), rss_now()};
}

struct memory_totals {
  double live = 0, allocs = 0, rss = 0;

  void add(const memory_sample& before, const memory_sample& after) {
    const auto n = static_cast<double>(w3_tasks);
    live += static_cast<double>(after.heap.live_bytes - before.heap.live_bytes) / n;
    allocs += static_cast<double>(after.heap.allocations - before.heap.allocations) / n;
    rss += (static_cast<double>(after.rss) - static_cast<double>(before.rss)) / n;
  }

  void report(benchmark::State& state) const {
    const auto its = static_cast<double>(state.iterations());
    state.counters["tasks_per_iter"] = static_cast<double>(w3_tasks);
    state.counters["live_bytes_per_task"] = live / its;
    state.counters["allocs_per_task"] = allocs / its;
    state.counters["rss_bytes_per_task"] = rss / its;
  }
};

void BM_W3_taskyard(benchmark::State& state) {
  const auto names = make_names(w3_tasks);
  memory_totals totals;
  for (auto _ : state) {
    // A new io_context each time: the switches its gate pool keeps (with the cancellation handlers
    // of the tasks that held them) would otherwise serve the next iteration's tasks uncounted.
    started_app s;
    ended = 0;
    const auto before = sample_memory();
    for (const auto& name : names) s.app.add_task(sleeper(), name);
    drain(s.ioc);
    const auto after = sample_memory();
    state.PauseTiming();
    totals.add(before, after);
    for (auto& task : s.app.tasks()) task.cancel();
    drain(s.ioc);
    s.app.purge_tasks();
    expect_ended(state, w3_tasks);
    state.ResumeTiming();
  }
  totals.report(state);
}

void BM_W3_co_spawn_signal(benchmark::State& state) {
  asio::io_context ioc{1};
  memory_totals totals;
  for (auto _ : state) {
    ended = 0;
    std::deque<asio::cancellation_signal> signals;
    const auto before = sample_memory();
    for (std::size_t i = 0; i < w3_tasks; ++i)
      asio::co_spawn(ioc, sleeper(),
                     asio::bind_cancellation_slot(signals.emplace_back().slot(), asio::detached));
    drain(ioc);
    const auto after = sample_memory();
    state.PauseTiming();
    totals.add(before, after);
    for (auto& signal : signals) signal.emit(asio::cancellation_type::terminal);
    drain(ioc);
    expect_ended(state, w3_tasks);
    state.ResumeTiming();
  }
  totals.report(state);
}

// ------------------------------------------------------------------------------------------------
// W4: cancelling suspended named tasks, until each has finished
//
// Two ways, each against the hand-written registry doing the same: all at once (every cancellation
// started, then the io_context run until every task has ended), and one task after another (each
// cancellation awaited, so that it has ended before the next starts).

/// Awaits cancel_task for every name in turn; counts those that found their task.
asio::awaitable<void> cancel_one_by_one(taskyard::App& app, const std::vector<std::string>& names,
                                        std::size_t& cancelled) {
  for (const auto& name : names)
    if (co_await app.cancel_task(name)) ++cancelled;
}

/// Starts an async_cancel_task for every name; counts the handlers that saw their task found and
/// cancelled without a failure.
void cancel_all_at_once(taskyard::App& app, const std::vector<std::string>& names,
                        std::size_t& cancelled) {
  for (const auto& name : names) {
    app.async_cancel_task(name, [&cancelled](std::exception_ptr e, bool found) {
      if (!e && found) ++cancelled;
    });
  }
}

template <asio::awaitable<void> (*Task)(), bool one_by_one>
void W4_taskyard(benchmark::State& state) {
  started_app s;
  const auto names = make_names(batch);
  std::size_t expected = 0;
  std::size_t cancelled = 0;
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    state.PauseTiming();
    for (const auto& name : names) s.app.add_task(Task(), name);
    drain(s.ioc);
    state.ResumeTiming();
    if constexpr (one_by_one) {
      asio::co_spawn(s.ioc, cancel_one_by_one(s.app, names, cancelled), asio::detached);
    } else {
      cancel_all_at_once(s.app, names, cancelled);
    }
    drain(s.ioc);
    state.PauseTiming();
    s.app.purge_tasks();
    expected += batch;
    if (cancelled != expected || ended != expected) {
      state.SkipWithError("not every task was cancelled and ended in its iteration");
      break;
    }
    state.ResumeTiming();
  }
  meter.finish();
}

asio::awaitable<void> cancel_and_wait_one_by_one(hand_registry& r,
                                                 const std::vector<std::string>& names) {
  for (const auto& name : names) co_await r.cancel_and_wait(name);
}

template <asio::awaitable<void> (*Task)(), bool one_by_one>
void W4_registry(benchmark::State& state) {
  asio::io_context ioc{1};
  hand_registry r{ioc, {}, {}};
  const auto names = make_names(batch);
  std::size_t expected = 0;
  ended = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    state.PauseTiming();
    for (const auto& name : names) r.add(name, Task());
    drain(ioc);
    state.ResumeTiming();
    if constexpr (one_by_one)
      asio::co_spawn(ioc, cancel_and_wait_one_by_one(r, names), asio::detached);
    else
      for (const auto& name : names) r.cancel(name);
    drain(ioc);
    state.PauseTiming();
    r.purge();
    expected += batch;
    if (ended != expected) {
      state.SkipWithError("not every task ended in its iteration");
      break;
    }
    state.ResumeTiming();
  }
  meter.finish();
}

void BM_W4_taskyard(benchmark::State& state) { W4_taskyard<sleeper, false>(state); }
void BM_W4_registry(benchmark::State& state) { W4_registry<sleeper, false>(state); }
void BM_W4nothrow_taskyard(benchmark::State& state) { W4_taskyard<quiet_sleeper, false>(state); }
void BM_W4nothrow_registry(benchmark::State& state) { W4_registry<quiet_sleeper, false>(state); }
void BM_W4_taskyard_one_by_one(benchmark::State& state) { W4_taskyard<sleeper, true>(state); }
void BM_W4_registry_one_by_one(benchmark::State& state) { W4_registry<sleeper, true>(state); }
void BM_W4nothrow_taskyard_one_by_one(benchmark::State& state) {
  W4_taskyard<quiet_sleeper, true>(state);
}
void BM_W4nothrow_registry_one_by_one(benchmark::State& state) {
  W4_registry<quiet_sleeper, true>(state);
}

// ------------------------------------------------------------------------------------------------
// W6: steady state, as a server: 10,000 live named tasks, each ending after a few turns of the
// io_context and replaced by a new one under a new name; finished tasks leave the registry.

constexpr std::size_t w6_live = 10000;

// W6's peaks, from before its App (or registry) is made: of the heap (live bytes, from the counting
// allocator) and of the resident set (pages touched, heap or not), each less what was there before.
// The peak RSS is reported only where the system lets the process reset it.
class peak_memory {
public:
  peak_memory() {
    trim_heap();
    heap_before_ = alloc_now().live_bytes;
    rss_known_ = reset_peak_rss();
    rss_before_ = rss_now(); // after the reset: the peak from here on is at least this
  }

  void report(benchmark::State& state) const {
    state.counters["peak_heap_mb"] =
        static_cast<double>(alloc_now().peak_live_bytes - heap_before_) / 1e6;
    if (rss_known_)
      state.counters["peak_rss_mb"] =
          static_cast<double>(std::max(peak_rss(), rss_before_) - rss_before_) / 1e6;
  }

private:
  std::size_t heap_before_ = 0;
  std::size_t rss_before_ = 0;
  bool rss_known_ = false;
};

void BM_W6_taskyard(benchmark::State& state) {
  const peak_memory memory;
  started_app s;
  s.app.config().auto_purge = true;
  std::size_t added = 0;
  ended = 0;
  auto add_one = [&] { s.app.add_task(connection(), make_name('c', added++)); };
  while (added < w6_live) add_one();
  reset_peak();
  alloc_meter meter(state, 1);
  for (auto _ : state) {
    add_one();
    while (ended + w6_live < added) s.ioc.run_one();
  }
  meter.finish();
  memory.report(state);
  if (s.app.tasks().size() > w6_live + 1) state.SkipWithError("finished tasks stayed registered");
}

void BM_W6_registry(benchmark::State& state) {
  const peak_memory memory;
  asio::io_context ioc{1};
  hand_registry r{ioc, {}, {}};
  std::size_t added = 0;
  ended = 0;
  auto add_one = [&] {
    r.add(make_name('c', added++), connection());
    if (r.finished.size() >= 256) r.purge();
  };
  while (added < w6_live) add_one();
  reset_peak();
  alloc_meter meter(state, 1);
  for (auto _ : state) {
    add_one();
    while (ended + w6_live < added) ioc.run_one();
  }
  meter.finish();
  memory.report(state);
  // What is left runs to its end with the io_context's destruction.
}

// ------------------------------------------------------------------------------------------------
// W5: get_task among 1,000,000 registered names (finished tasks: they stay until purged)

constexpr std::size_t w5_names = 1000000;

std::vector<std::uint32_t> lookup_order() {
  std::vector<std::uint32_t> order(w5_names);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937(42));
  return order;
}

struct w5_taskyard_fixture {
  started_app s;
  std::vector<std::string> names = make_names(w5_names);
  std::vector<std::uint32_t> order = lookup_order();
  w5_taskyard_fixture() {
    for (std::size_t i = 0; i < w5_names; ++i) {
      s.app.add_task(noop(), names[i]);
      if (i % 10000 == 9999) drain(s.ioc);
    }
    drain(s.ioc);
  }
};

struct w5_flat_map_fixture {
  boost::unordered_flat_map<std::string, std::shared_ptr<hand_registry::entry>> map;
  std::vector<std::string> names = make_names(w5_names);
  std::vector<std::uint32_t> order = lookup_order();
  w5_flat_map_fixture() {
    map.reserve(w5_names);
    for (const auto& name : names) map.emplace(name, std::make_shared<hand_registry::entry>());
  }
};

// Built once and kept: every repetition looks up in the same registry.
template <typename Fixture>
Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_W5_taskyard(benchmark::State& state) {
  auto& f = fixture<w5_taskyard_fixture>();
  std::size_t k = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i, ++k) {
      auto task = f.s.app.get_task(f.names[f.order[k % w5_names]]);
      benchmark::DoNotOptimize(task);
    }
  }
  meter.finish();
}

void BM_W5_flat_map(benchmark::State& state) {
  auto& f = fixture<w5_flat_map_fixture>();
  std::size_t k = 0;
  alloc_meter meter(state, batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i, ++k) {
      auto it = f.map.find(f.names[f.order[k % w5_names]]);
      if (it == f.map.end()) throw std::runtime_error("not found");
      std::shared_ptr<hand_registry::entry> handle = it->second;
      benchmark::DoNotOptimize(handle);
    }
  }
  meter.finish();
}

} // namespace

BENCHMARK(BM_W1_taskyard);
BENCHMARK(BM_W1_co_spawn);
BENCHMARK(BM_W1_co_spawn_signal);
BENCHMARK(BM_W1_taskyard_strand);
BENCHMARK(BM_W2_taskyard);
BENCHMARK(BM_W2_registry);
BENCHMARK(BM_W3_taskyard)->Iterations(3);
BENCHMARK(BM_W3_co_spawn_signal)->Iterations(3);
BENCHMARK(BM_W4_taskyard);
BENCHMARK(BM_W4_registry);
BENCHMARK(BM_W4nothrow_taskyard);
BENCHMARK(BM_W4nothrow_registry);
BENCHMARK(BM_W4_taskyard_one_by_one);
BENCHMARK(BM_W4_registry_one_by_one);
BENCHMARK(BM_W4nothrow_taskyard_one_by_one);
BENCHMARK(BM_W4nothrow_registry_one_by_one);
BENCHMARK(BM_W6_taskyard)->Iterations(200000);
BENCHMARK(BM_W6_registry)->Iterations(200000);
BENCHMARK(BM_W5_taskyard)->Iterations(2000);
BENCHMARK(BM_W5_flat_map)->Iterations(2000);

BENCHMARK_MAIN();
