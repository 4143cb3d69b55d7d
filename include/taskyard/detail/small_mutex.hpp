//
// taskyard/detail/small_mutex.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// A mutex in four bytes, for what there is one of per task: a registry of a million tasks holds a
// million task states, and std::mutex takes 40 bytes of each. Its uncontended lock and unlock are
// inline, where std::mutex calls pthread_mutex_lock and pthread_mutex_unlock each time, so the
// App's own locks on the hot path (the registry's, the switch pool's) use it too.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_SMALL_MUTEX_HPP
#define TASKYARD_DETAIL_SMALL_MUTEX_HPP

#include <taskyard/detail/compiler.hpp>

#include <atomic>
#include <cstdint>

namespace taskyard::detail {

/// A non-recursive mutex (Lockable: std::lock_guard and std::unique_lock take it) in one 32-bit
/// word. Uncontended, lock and unlock are one atomic operation each, as for std::mutex. A thread
/// that finds it locked marks it contended and sleeps in std::atomic::wait (a futex on Linux) until
/// an unlock wakes it; an unlock that finds no mark makes no system call. This is the three-state
/// mutex of Ulrich Drepper's "Futexes Are Tricky".
class small_mutex {
public:
  small_mutex() noexcept = default;
  small_mutex(const small_mutex&) = delete;
  small_mutex& operator=(const small_mutex&) = delete;

  void lock() noexcept {
    std::uint32_t seen = unlocked;
    if (state_.compare_exchange_strong(seen, locked, std::memory_order_acquire,
                                       std::memory_order_relaxed))
      return;
    lock_contended(seen);
  }

  [[nodiscard]] bool try_lock() noexcept {
    std::uint32_t seen = unlocked;
    return state_.compare_exchange_strong(seen, locked, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (state_.exchange(unlocked, std::memory_order_release) == contended) wake_one();
  }

private:
  // The slow paths stay out of line, so that a caller that inlines a lock's fast path whole
  // (registry::find) does not take the futex calls in with it.
  TASKYARD_DETAIL_NOINLINE void wake_one() noexcept { state_.notify_one(); }

  // Whoever takes the lock from here on takes it marked contended, since it cannot know whether
  // other threads still sleep on it: at worst one unlock makes a system call that wakes nobody.
  TASKYARD_DETAIL_NOINLINE void lock_contended(std::uint32_t seen) noexcept {
    if (seen != contended) seen = state_.exchange(contended, std::memory_order_acquire);
    while (seen != unlocked) {
      state_.wait(contended, std::memory_order_relaxed);
      seen = state_.exchange(contended, std::memory_order_acquire);
    }
  }

  static constexpr std::uint32_t unlocked = 0;
  static constexpr std::uint32_t locked = 1;    // no thread waits for it
  static constexpr std::uint32_t contended = 2; // threads may wait for it

  std::atomic<std::uint32_t> state_{unlocked};
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_SMALL_MUTEX_HPP
