//
// taskyard/detail/task_gate.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The switch behind a task's executor (see task_executor), which the App throws when it gives up
// on the task, and the strand the task runs on. Every copy of the executor carries a reference to
// them, and Asio copies executors often: a shared_ptr there would add two atomic operations per
// copy, and a strand in the executor would make it too big for any_io_executor to hold without
// allocating. Instead the switches live in a pool that belongs to the io_context, which outlives
// every executor that may still be used, and a reference is a plain pointer and the generation of
// the task it was made for. A task hands its switch back when it finishes; a copy of its executor
// that is still around then sees another generation, and treats the switch as never thrown, as it
// was for its own task.
//
// Each switch comes with a strand of its own, made with it and kept by it (none on an io_context
// run by one thread, where the io_context serialises everything already), and with the task's
// cancellation signal, so that the memory a task's launch takes for its cancellation state goes
// from one task to the next (see gate_slot::signal). Two unfinished tasks never share a strand; a
// task may be given the strand of one that has finished (see gate_pool for what that means for the
// work a task leaves behind).
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_TASK_GATE_HPP
#define TASKYARD_DETAIL_TASK_GATE_HPP

#include <taskyard/detail/block_cache.hpp>
#include <taskyard/detail/small_mutex.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detail/concurrency_hint.hpp>
#include <boost/asio/detail/strand_executor_service.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/require.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace taskyard::detail {

/// True if the io_context was made for one thread (concurrency hint 1, or a hint that turns its
/// locking off): Asio's own promise that one thread runs it, so a task needs no strand of its own.
/// The same rule as the scheduler's own single-thread optimisation.
inline bool runs_on_one_thread(boost::asio::io_context& ioc) {
  const int hint =
      boost::asio::use_service<boost::asio::detail::io_context_impl>(ioc).concurrency_hint();
  return hint == 1 || !BOOST_ASIO_CONCURRENCY_HINT_IS_LOCKING(SCHEDULER, hint) ||
         !BOOST_ASIO_CONCURRENCY_HINT_IS_LOCKING(REACTOR_IO, hint);
}

using strand_service = boost::asio::detail::strand_executor_service;

/// One switch of a gate_pool. Its word is the generation of the task holding it, shifted left by
/// one, with the low bit set once that task has been given up on.
struct gate_slot {
  std::atomic<std::uint64_t> word{0};
  gate_slot* next_free = nullptr; // guarded by the pool
  /// Made before the slot is first handed out, and never changed: null on an io_context run by one
  /// thread.
  strand_service::implementation_type strand;
  /// The cancellation signal of the task holding the slot, to which the task's launch (see
  /// task_launch.hpp) binds the cancellation state of its coroutines: the handler that state
  /// installs in it (and, launched with co_spawn, co_spawn's own handler, with the state under it)
  /// is an allocation that a signal in the task's state would make anew for every task. Here the
  /// handler stays when the task finishes, and the next task's launch replaces it in the same
  /// memory (with co_spawn, the state freed with the old handler is the block Asio's cache of the
  /// thread hands to the new one: the launch runs on a thread that runs the io_context).
  boost::asio::cancellation_signal signal;
};

/// A task's switch, as every copy of its executor carries it: trivially copyable.
class gate_ref {
public:
  gate_ref() noexcept = default;
  gate_ref(gate_slot* slot, std::uint64_t generation) noexcept
      : slot_(slot), generation_(generation) {}

  [[nodiscard]] bool valid() const noexcept { return slot_ != nullptr; }

  /// The strand its task runs on; null if the io_context is run by one thread.
  [[nodiscard]] const strand_service::implementation_type& strand() const noexcept {
    return slot_->strand;
  }

  /// The slot the task's launch binds its cancellation to.
  [[nodiscard]] boost::asio::cancellation_slot cancellation_slot() const noexcept {
    return slot_->signal.slot();
  }

  /// Emits a terminal cancellation to the task this reference was made for, unless it has handed
  /// its switch back. Only where the task runs (its strand, or the io_context run by one thread):
  /// a task that has started hands its switch back there, and the next task to take the switch
  /// starts there, so none can take it between the check and the emission.
  void emit_terminal() const {
    if ((slot_->word.load(std::memory_order_acquire) >> 1) == generation_)
      slot_->signal.emit(boost::asio::cancellation_type::terminal);
  }

  /// True once the App has given up on the task this reference was made for. Never true of a
  /// reference whose task has finished and handed its switch back.
  [[nodiscard]] bool thrown() const noexcept {
    return slot_->word.load(std::memory_order_acquire) == (held() | 1U);
  }

  /// Throws the switch, unless its task has handed it back already. Thread-safe.
  void throw_switch() const noexcept {
    std::uint64_t expected = held();
    slot_->word.compare_exchange_strong(expected, held() | 1U, std::memory_order_acq_rel);
  }

  friend bool operator==(const gate_ref& a, const gate_ref& b) noexcept {
    return a.slot_ == b.slot_ && a.generation_ == b.generation_;
  }

private:
  friend class gate_pool;

  [[nodiscard]] std::uint64_t held() const noexcept { return generation_ << 1; }

  gate_slot* slot_ = nullptr;
  std::uint64_t generation_ = 0;
};

/// The switches of the tasks of one io_context: an io_context service, so that a switch lives as
/// long as any executor that refers to it may be used.
///
/// A switch goes back to the pool when its task finishes, and comes out again after every switch
/// that came back before it (first in, first out), so that the work a task leaves behind (a
/// coroutine it spawned on its executor and did not wait for, a timer it did not wait for) is as
/// unlikely as may be to meet a later task on its strand. If it does, the two are serialised with
/// each other: never run at the same time, which is safe, but neither may block waiting for the
/// other inside a handler. The same holds for a task's lone waiter resumed in place as the task
/// ends (see wait_list::wake::in_place): it runs while its thread still holds the finished task's
/// strand, so a later task given that strand meanwhile starts once the waiter suspends. A switch
/// that was thrown is never handed out again, since the executor
/// copies of a task given up on must go on seeing it thrown: it stays, with its strand (about 150
/// bytes) and its cancellation handler, until the io_context is destroyed.
///
/// The pool never shrinks: it holds as many switches as tasks have ever been running at once (in
/// slabs of 256), and a free switch keeps the cancellation handler of the last task that held it
/// (about 120 bytes) for the next one, since a bound on them would leave the switches that come
/// out first after a burst without one.
///
/// Thread safety: acquire and release may be called from any thread.
class gate_pool final : public boost::asio::execution_context::service {
public:
  static inline boost::asio::execution_context::id id; // NOLINT(readability-identifier-naming)

  // The strand service is made first if it does not exist yet, so that it is destroyed after the
  // pool and its strands (services go in the reverse order they came).
  explicit gate_pool(boost::asio::io_context& ioc)
      : service(ioc),
        strands_(runs_on_one_thread(ioc) ? nullptr
                                         : &boost::asio::use_service<strand_service>(ioc)) {}

  /// True if tasks get a strand each, with their switch: unless one thread runs the io_context.
  [[nodiscard]] bool strands() const noexcept { return strands_ != nullptr; }

  /// A switch, with its strand, for a task about to start. Throws std::bad_alloc if the pool
  /// needs to grow and cannot.
  gate_ref acquire() {
    std::lock_guard<small_mutex> lock(mutex_);
    if (first_free_ == nullptr) grow();
    gate_slot* slot = first_free_;
    first_free_ = slot->next_free;
    if (first_free_ == nullptr) last_free_ = nullptr;
    --free_count_;
    return {slot, slot->word.load(std::memory_order_relaxed) >> 1};
  }

  /// Hands a finished task's switch back for another task, unless it was thrown (or handed back
  /// already: a second call does nothing). The cancellation handler the launch installed in its
  /// signal stays, for the next task's launch to replace in the same memory. Called where the
  /// launch never ran for the task, or is done with its signal.
  void release(const gate_ref& gate) {
    std::uint64_t expected = gate.held();
    if (!gate.slot_->word.compare_exchange_strong(expected, gate.held() + 2U,
                                                  std::memory_order_acq_rel))
      return; // thrown: copies of the task's executor must go on seeing it thrown
    std::lock_guard<small_mutex> lock(mutex_);
    push_free(gate.slot_);
  }

  /// How many switches the pool holds, and how many of them are free: the others belong to
  /// unfinished tasks, or were thrown.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return slabs_.size() * slab_size;
  }
  [[nodiscard]] std::size_t free_count() const {
    std::lock_guard<small_mutex> lock(mutex_);
    return free_count_;
  }

private:
  static constexpr std::size_t slab_size = 256;

  void shutdown() override {}

  void push_free(gate_slot* slot) noexcept {
    slot->next_free = nullptr;
    if (last_free_ != nullptr)
      last_free_->next_free = slot;
    else
      first_free_ = slot;
    last_free_ = slot;
    ++free_count_;
  }

  void grow() {
    auto slab = std::make_unique<gate_slot[]>(slab_size);
    if (strands_ != nullptr)
      for (std::size_t i = 0; i < slab_size; ++i)
        slab[i].strand = strands_->create_implementation();
    slabs_.push_back(std::move(slab));
    for (std::size_t i = 0; i < slab_size; ++i) push_free(&slabs_.back()[i]);
  }

  strand_service* const strands_;
  mutable small_mutex mutex_;
  gate_slot* first_free_ = nullptr; // handed out first
  gate_slot* last_free_ = nullptr;  // the last handed back
  std::size_t free_count_ = 0;
  std::vector<std::unique_ptr<gate_slot[]>> slabs_;
};

/// Posts `f` to where the task holding `gate` runs (its strand, or `io` if it has none or no switch
/// yet), bypassing the switch: for what must reach a task that has been given up on. The operation
/// that carries `f` comes from the block cache (see block_cache.hpp).
template <typename Function>
void post_to_task(const gate_ref& gate, const boost::asio::io_context::executor_type& io,
                  Function&& f) {
  auto never = boost::asio::require(io, boost::asio::execution::blocking.never,
                                    boost::asio::execution::allocator(cached_allocator<void>()));
  if (gate.valid() && gate.strand())
    strand_service::execute(gate.strand(), never, std::forward<Function>(f));
  else
    never.execute(std::forward<Function>(f));
}

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_TASK_GATE_HPP
