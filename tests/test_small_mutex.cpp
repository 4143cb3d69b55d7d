#include <taskyard/detail/small_mutex.hpp>

#include <catch2/catch.hpp>

// The four-byte mutex of task states, App cores and event hubs: that it excludes, under contention
// from more threads than there are cores (so that holders are preempted and waiters sleep), and
// that a waiter wakes when the holder unlocks.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

using taskyard::detail::small_mutex;

TEST_CASE("a small mutex takes four bytes") { CHECK(sizeof(small_mutex) == 4); }

TEST_CASE("try_lock fails while another thread holds a small mutex, and succeeds once it is free") {
  small_mutex m;
  m.lock();
  bool taken_while_held = true;
  std::thread([&] { taken_while_held = m.try_lock(); }).join();
  CHECK_FALSE(taken_while_held);
  m.unlock();
  bool taken_when_free = false;
  std::thread([&] {
    taken_when_free = m.try_lock();
    if (taken_when_free) m.unlock();
  }).join();
  CHECK(taken_when_free);
}

TEST_CASE("threads that increment a plain counter under a small mutex lose no increment") {
  constexpr std::size_t threads = 8;
  constexpr std::size_t rounds = 100000;
  small_mutex m;
  std::size_t counter = 0; // not atomic: only the mutex keeps the increments apart
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (std::size_t i = 0; i < rounds; ++i) {
        std::lock_guard<small_mutex> lock(m);
        const std::size_t seen = counter;
        if (i % 64 == 0) std::this_thread::yield(); // hold it across a reschedule now and then
        counter = seen + 1;
      }
    });
  }
  go = true;
  for (auto& t : pool) t.join();
  CHECK(counter == threads * rounds);
}

TEST_CASE("a thread waiting for a small mutex takes it when the holder unlocks") {
  small_mutex m;
  std::atomic<bool> started{false};
  std::atomic<bool> acquired{false};
  m.lock();
  std::thread waiter([&] {
    started = true;
    m.lock();
    acquired = true;
    m.unlock();
  });
  while (!started.load()) std::this_thread::yield();
  CHECK_FALSE(acquired.load()); // the lock is still held
  m.unlock();
  waiter.join(); // hangs, and the test times out, if the unlock never wakes it
  CHECK(acquired.load());
}
