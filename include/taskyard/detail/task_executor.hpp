//
// taskyard/detail/task_executor.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// The executor a task's coroutine runs on: the io_context's executor, the task's strand (none on
// an io_context run by one thread), and a switch that the App throws when it gives up on the task
// (forced shutdown, App destroyed); the strand and the switch are both reached through a gate_ref
// (see task_gate.hpp), so that the executor is 24 bytes, which any_io_executor holds without
// allocating. Once the switch is thrown, work submitted to the executor is destroyed instead of
// run, so the task's coroutine is never resumed again and its frames are destroyed as soon as the
// operation it is suspended on completes (the App cancels that operation when it throws the
// switch). Every property is forwarded to the io_context's executor, as asio::strand forwards to
// its inner executor; but the operations that carry the functions it is given come from the block
// cache (see block_cache.hpp) while its allocator property still says std::allocator<void>, unless
// it is given an allocator of its own.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_TASK_EXECUTOR_HPP
#define TASKYARD_DETAIL_TASK_EXECUTOR_HPP

#include <taskyard/detail/block_cache.hpp>
#include <taskyard/detail/task_gate.hpp>

#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace taskyard::detail {

template <typename Inner>
class task_executor {
public:
  task_executor(Inner inner, gate_ref gate) noexcept : inner_(std::move(inner)), gate_(gate) {}

  template <typename OtherInner>
  requires std::is_constructible_v<Inner, const OtherInner&>
  task_executor(const task_executor<OtherInner>& other)
  noexcept // NOLINT(google-explicit-constructor)
      : inner_(other.inner_), gate_(other.gate_) {}

  template <typename Property>
  requires boost::asio::can_query<const Inner&, const Property&>::value decltype(auto)
  query(const Property& p) const
      noexcept(boost::asio::is_nothrow_query<const Inner&, const Property&>::value) {
    return boost::asio::query(inner_, p);
  }

  template <typename Property>
  requires boost::asio::can_require<const Inner&, const Property&>::value auto
  require(const Property& p) const
      noexcept(boost::asio::is_nothrow_require<const Inner&, const Property&>::value) {
    using result = std::decay_t<decltype(boost::asio::require(inner_, p))>;
    return task_executor<result>(boost::asio::require(inner_, p), gate_);
  }

  template <typename Property>
  requires boost::asio::can_prefer<const Inner&, const Property&>::value auto
  prefer(const Property& p) const
      noexcept(boost::asio::is_nothrow_prefer<const Inner&, const Property&>::value) {
    using result = std::decay_t<decltype(boost::asio::prefer(inner_, p))>;
    return task_executor<result>(boost::asio::prefer(inner_, p), gate_);
  }

  template <typename Function>
  void execute(Function&& f) const {
    gated<std::decay_t<Function>> g{gate_, std::forward<Function>(f)};
    const auto& inner = with_cached_operations(inner_);
    if (gate_.strand())
      strand_service::execute(gate_.strand(), inner, std::move(g));
    else
      inner.execute(std::move(g));
  }

  /// True if the task runs on a strand of its own.
  [[nodiscard]] bool on_strand() const noexcept { return gate_.strand() != nullptr; }

  friend bool operator==(const task_executor& a, const task_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.gate_ == b.gate_;
  }
  friend bool operator!=(const task_executor& a, const task_executor& b) noexcept {
    return !(a == b);
  }

private:
  template <typename>
  friend class task_executor;

  // The operation that carries a function to the io_context (or to the strand) comes from the block
  // cache (see block_cache.hpp), unless the executor was given an allocator of its own (one other
  // than std::allocator<void>, which cannot be told apart from none). Submitted through an
  // untracked copy: the operation counts as outstanding work itself, and copying a tracked executor
  // would count it once more for nothing. Where the cache cannot be used, the executor itself.
  static decltype(auto) with_cached_operations(const Inner& inner) {
    namespace execution = boost::asio::execution;
    using cached = execution::allocator_t<cached_allocator<void>>;
    using untracked = execution::outstanding_work_t::untracked_t;
    if constexpr (boost::asio::can_query<const Inner&, execution::allocator_t<void>>::value &&
                  boost::asio::can_require<const Inner&, untracked, cached>::value) {
      using allocator = std::decay_t<decltype(boost::asio::query(inner, execution::allocator))>;
      if constexpr (std::is_same_v<allocator, std::allocator<void>>)
        return boost::asio::require(inner, execution::outstanding_work.untracked,
                                    execution::allocator(cached_allocator<void>()));
      else
        return (inner);
    } else {
      return (inner);
    }
  }

  template <typename Function>
  struct gated {
    gate_ref gate;
    Function f;
    void operator()() {
      if (!gate.thrown()) std::move(f)();
      // Otherwise f is destroyed unrun with this object, and with it the coroutine frames it owns.
    }
  };

  Inner inner_;
  gate_ref gate_;
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_TASK_EXECUTOR_HPP
