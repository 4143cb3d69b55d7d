//
// taskyard/events.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// Named events: a coroutine waits for the next dispatch of a name (Sanic's `await app.event(...)`
// and `app.dispatch(...)`). Each App owns an event_hub; App::event and App::dispatch use it.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_EVENTS_HPP
#define TASKYARD_EVENTS_HPP

#include <taskyard/detail/small_mutex.hpp>
#include <taskyard/detail/wait_list.hpp>
#include <taskyard/errors.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace taskyard {

/// Thrown by App::event(name, timeout) when no dispatch of the name came in time.
class event_timeout : public error {
public:
  explicit event_timeout(std::string_view name)
      : error("taskyard: no dispatch of event '" + std::string(name) +
              "' came before the timeout; dispatch it, or wait without a timeout"),
        name_(name) {}

  /// The event that was waited for.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
  std::string name_;
};

/// Thrown by App::event and App::dispatch when the event name is empty.
class invalid_event_name : public error {
public:
  invalid_event_name()
      : error("taskyard: an event name must not be empty; name the event, e.g. "
              "\"my.custom.event\"") {}
};

/// Waiters by event name.
///
/// Unlike Sanic, an event needs no registration (Sanic needs the signal defined, or
/// EVENT_AUTOREGISTER): any name may be waited for and dispatched. A dispatch wakes the coroutines
/// waiting on its name at that moment, and no later one: it is not remembered.
///
/// Thread safety: every member may be called from any thread.
class event_hub {
public:
  /// `fallback` runs the completion of a wait whose handler has no associated executor.
  explicit event_hub(boost::asio::any_io_executor fallback) : fallback_(std::move(fallback)) {}
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;
  ~event_hub() { close(); }

  /// Waits for the next dispatch of `name`. Completes with success when it comes, or with
  /// operation_aborted if the handler's cancellation slot is emitted first (terminal, partial or
  /// total cancellation); never inside dispatch. Throws invalid_event_name if the name is empty.
  template <typename CompletionToken>
  auto async_wait(std::string name, CompletionToken&& token) {
    if (name.empty()) throw invalid_event_name();
    event_hub* self = this; // not [this]: see detail::app_core::async_wait_change
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [self, name = std::move(name)](auto handler) {
          std::lock_guard<detail::small_mutex> lock(self->mutex_);
          if (self->closed_) return; // the hub is going: the handler is destroyed, unrun
          auto& waiters = self->waiters_[name];
          if (!waiters) waiters = std::make_unique<detail::wait_list>();
          waiters->push(std::move(handler), self->fallback_, self->mutex_);
        },
        token);
  }

  /// Wakes every coroutine waiting on `name` now, and returns how many. Throws invalid_event_name
  /// if the name is empty.
  std::size_t dispatch(std::string_view name) {
    if (name.empty()) throw invalid_event_name();
    detail::wait_list::node* woken = nullptr;
    std::size_t count = 0;
    std::unique_ptr<detail::wait_list> emptied; // destroyed after the lock
    {
      std::lock_guard<detail::small_mutex> lock(mutex_);
      auto it = waiters_.find(name);
      if (it == waiters_.end()) return 0;
      count = it->second->size();
      woken = it->second->detach_all();
      emptied = std::move(it->second);
      waiters_.erase(it);
    }
    detail::wait_list::complete_detached(woken);
    return count;
  }

  /// How many coroutines wait on `name` now.
  [[nodiscard]] std::size_t waiting(std::string_view name) const {
    std::lock_guard<detail::small_mutex> lock(mutex_);
    auto it = waiters_.find(name);
    return it == waiters_.end() ? 0 : it->second->size();
  }

  /// Forgets `name` if nobody waits on it any more (after a wait was cancelled or timed out).
  void prune(std::string_view name) {
    std::unique_ptr<detail::wait_list> emptied; // destroyed after the lock
    std::lock_guard<detail::small_mutex> lock(mutex_);
    auto it = waiters_.find(name);
    if (it == waiters_.end() || !it->second->empty()) return;
    emptied = std::move(it->second);
    waiters_.erase(it);
  }

  /// Destroys every pending wait, unrun, and refuses new ones: for the owner's teardown, when the
  /// coroutines waiting must never resume.
  void close() noexcept {
    std::lock_guard<detail::small_mutex> lock(mutex_);
    closed_ = true;
    for (auto& entry : waiters_) entry.second->destroy_all();
    waiters_.clear();
  }

private:
  boost::asio::any_io_executor fallback_;
  mutable detail::small_mutex mutex_;
  bool closed_ = false;
  std::map<std::string, std::unique_ptr<detail::wait_list>, std::less<>> waiters_;
};

} // namespace taskyard

#endif // TASKYARD_EVENTS_HPP
