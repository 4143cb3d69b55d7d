//
// taskyard/detail/wait_list.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// A list of pending asynchronous waits guarded by a mutex that its owner also uses for the
// condition being waited on, so that "check the condition, else enqueue" is atomic with respect to
// "make the condition true, then complete every waiter".
//
// Each wait is an Asio asynchronous operation: it keeps its executor's work alive, completes on the
// handler's associated executor, and supports per-operation cancellation through the handler's
// associated cancellation slot (terminal, partial and total, or those the handler accepts: see
// accepted_cancellation), in which case it completes with asio::error::operation_aborted. A
// completion is posted, never run inside the call that completed it, unless the completer asks for
// wake::in_place (see there).
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_WAIT_LIST_HPP
#define TASKYARD_DETAIL_WAIT_LIST_HPP

#include <taskyard/detail/block_cache.hpp>
#include <taskyard/detail/intrusive_list.hpp>
#include <taskyard/detail/small_mutex.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>

namespace taskyard::detail {

/// The cancellation types on which a wait for `Handler` completes early: terminal, partial and
/// total, unless the handler names others in a static member `accepted_cancellation`. A wait that
/// some effect came before (cancel_task's, after its cancellation request) cannot honour total
/// cancellation, which promises that the operation had no effect.
template <typename Handler>
constexpr boost::asio::cancellation_type_t accepted_cancellation() {
  if constexpr (requires { Handler::accepted_cancellation; }) {
    return Handler::accepted_cancellation;
  } else {
    using ct = boost::asio::cancellation_type;
    return ct::terminal | ct::partial | ct::total;
  }
}

class wait_list {
public:
  /// How a completion reaches its waiter.
  enum class wake : unsigned char {
    /// Posted to the waiter's executor: the waiter never runs inside the call that completed it.
    post,
    /// Dispatched (asio::dispatch): run in place if the calling thread may run the waiter's
    /// executor, otherwise posted. It saves a trip through the scheduler, and so a poll of the
    /// reactor, for a waiter that resumes on the thread that completed it. Only a caller that may
    /// run arbitrary code in place asks for it (a task's completion, at the end of its coroutine),
    /// and only a lone waiter is woken so (see complete_detached). A chain of waiters, each
    /// completed in place by the one before it, nests on the stack: from max_in_place_depth nested
    /// completions on, the rest are posted.
    in_place,
  };

  /// How many completions may nest in place on one thread before the next is posted.
  static constexpr unsigned max_in_place_depth = 8;

  /// One pending wait. Owned by the list while linked, then by the completion made for it. Its
  /// memory comes from the block cache (see block_cache.hpp).
  class node {
  public:
    node() = default;
    node(const node&) = delete;
    node& operator=(const node&) = delete;
    virtual ~node() = default;

    static void* operator new(std::size_t size) { return block_cache::allocate(size); }
    // Sized, with the size of the waiter itself, whose destructor is virtual.
    static void operator delete(void* p, std::size_t size) noexcept {
      block_cache::deallocate(p, size);
    }

    /// Completes the wait on the waiter's executor, as `how` says. Called once, with the node
    /// unlinked.
    virtual void complete(boost::system::error_code ec, wake how) = 0;

  protected:
    friend class wait_list;
    list_links<node> links_;
    bool linked_ = false; // in a list: read by a cancellation handler, which may find it gone
  };

  /// The list is guarded by its owner's mutex, which every wait pushed on it keeps a pointer to.
  wait_list() = default;
  wait_list(const wait_list&) = delete;
  wait_list& operator=(const wait_list&) = delete;
  ~wait_list() { destroy_all(); }

  /// True if no wait is pending. Requires the mutex.
  [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }

  /// How many waits are pending. Requires the mutex.
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }

  /// Enqueues a wait for `handler`. Requires `mutex`, the mutex that guards the list, held; it
  /// must outlive the list and the wait (whose cancellation handler may run after the list has
  /// gone, until its completion has run). The handler is completed later by complete_all
  /// (success) or by its cancellation slot (operation_aborted).
  template <typename Handler, typename DefaultExecutor>
  void push(Handler&& handler, const DefaultExecutor& fallback, small_mutex& mutex) {
    auto* w = new waiter<std::decay_t<Handler>, DefaultExecutor>(
        *this, mutex, std::forward<Handler>(handler), fallback);
    nodes_.push_back(*w);
    w->linked_ = true;
    w->arm_cancellation();
  }

  /// Unlinks every pending wait, to be completed later by complete_detached. Requires the mutex.
  [[nodiscard]] node* detach_all() noexcept {
    node* first = nodes_.release_all();
    for (node* n = first; n != nullptr; n = list_type::next(*n)) n->linked_ = false;
    return first;
  }

  /// Completes, with success, waits returned by detach_all. Call it with no lock held.
  /// wake::in_place applies to a lone waiter only: of several, the first to resume in place would
  /// hold the others back until it suspended (and deadlock, were it to block its thread until
  /// another had run), so they are all posted.
  static void complete_detached(node* first, wake how = wake::post) {
    if (first != nullptr && list_type::next(*first) != nullptr) how = wake::post;
    while (first != nullptr) {
      node* next = list_type::next(*first);
      // The node is not touched here: detach_all unlinked it under the mutex, and a cancellation
      // handler running on another thread reads its flag under that mutex.
      first->complete({}, how);
      first = next;
    }
  }

  /// Completes every pending wait with success. Requires the mutex to be held by `lock`, which is
  /// released while the completions are posted.
  void complete_all(std::unique_lock<small_mutex>& lock) {
    node* first = detach_all();
    lock.unlock();
    complete_detached(first);
    lock.lock();
  }

  /// Runs `f` on `ex` as asio::dispatch does (in place if the calling thread may run `ex`,
  /// otherwise posted), unless max_in_place_depth completions already nest on this thread: then
  /// posts it. For a completion that may resume a coroutine, which may start the next operation
  /// and have it complete in place too: without the bound, a loop of them nests ever deeper.
  template <typename Executor, typename Function>
  static void dispatch_bounded(const Executor& ex, Function&& f) {
    if (in_place_depth < max_in_place_depth) {
      ++in_place_depth;
      const depth_guard leave;
      boost::asio::dispatch(ex, std::forward<Function>(f));
    } else {
      boost::asio::post(ex, std::forward<Function>(f));
    }
  }

  /// Destroys every pending wait without completing it (their handlers, and any coroutine frames
  /// they own, are destroyed). Only for teardown, when nothing may run any more.
  void destroy_all() noexcept {
    node* n = nodes_.release_all();
    while (n != nullptr) {
      node* next = list_type::next(*n);
      delete n;
      n = next;
    }
  }

private:
  template <typename Handler, typename DefaultExecutor>
  class waiter final : public node {
  public:
    using executor_type = boost::asio::associated_executor_t<Handler, DefaultExecutor>;

    waiter(wait_list& list, small_mutex& mutex, Handler&& h, const DefaultExecutor& fallback)
        : list_(&list), mutex_(&mutex), handler_(std::move(h)),
          work_(boost::asio::get_associated_executor(handler_, fallback)),
          slot_(boost::asio::get_associated_cancellation_slot(handler_)) {}

    ~waiter() override {
      if (slot_.is_connected()) slot_.clear();
    }

    void arm_cancellation() {
      if (slot_.is_connected()) slot_.template emplace<canceller>(this);
    }

    void complete(boost::system::error_code ec, wake how) override {
      // The slot is cleared, and the handler run, on the waiter's own executor: that is where the
      // cancellation signal is emitted, so the two never race.
      auto ex = work_.get_executor();
      finisher f{std::unique_ptr<waiter>(this), ec};
      if (how == wake::in_place)
        dispatch_bounded(ex, std::move(f));
      else
        boost::asio::post(ex, std::move(f));
    }

  private:
    struct finisher {
      std::unique_ptr<waiter> self;
      boost::system::error_code ec;
      void operator()() {
        Handler h(std::move(self->handler_));
        self.reset();
        std::move(h)(ec);
      }
    };

    struct canceller {
      // A constructor, not an aggregate: the slot constructs it with parentheses, which clang
      // accepts for aggregates only from version 16.
      explicit canceller(waiter* w) noexcept : self(w) {}
      waiter* self;
      void operator()(boost::asio::cancellation_type_t type) const {
        using ct = boost::asio::cancellation_type;
        if ((type & accepted_cancellation<Handler>()) == ct::none) return;
        {
          // The mutex outlives the list (an event's list goes once it is dispatched), and the list
          // is alive for as long as the node is linked in it.
          std::lock_guard<small_mutex> guard(*self->mutex_);
          if (!self->linked_) return; // already being completed
          self->list_->nodes_.erase(*self);
          self->linked_ = false;
        }
        self->complete(boost::asio::error::operation_aborted, wake::post);
      }
    };

    wait_list* list_;
    small_mutex* mutex_;
    Handler handler_;
    boost::asio::executor_work_guard<executor_type> work_;
    boost::asio::cancellation_slot slot_;
  };

  using list_type = intrusive_list<node, &node::links_>;

  // Completions running in place on this thread, one inside the other.
  static inline thread_local unsigned in_place_depth = 0;

  struct depth_guard {
    depth_guard() = default;
    depth_guard(const depth_guard&) = delete;
    depth_guard& operator=(const depth_guard&) = delete;
    ~depth_guard() { --in_place_depth; }
  };

  list_type nodes_;
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_WAIT_LIST_HPP
