//
// taskyard/registry.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// The registry of named tasks: a thread-safe map from name to task that remembers registration
// order. Each App owns one; App::add_task, get_task, find_task, purge_tasks and tasks() are thin
// layers over it.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_REGISTRY_HPP
#define TASKYARD_REGISTRY_HPP

#include <taskyard/detail/compiler.hpp>
#include <taskyard/detail/intrusive_list.hpp>
#include <taskyard/detail/name_hash.hpp>
#include <taskyard/detail/small_mutex.hpp>
#include <taskyard/errors.hpp>
#include <taskyard/task.hpp>

#include <boost/unordered/unordered_flat_map.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace taskyard {

/// What App::add_task does when a task that has not finished already holds the name.
enum class name_conflict {
  error,   ///< Throw duplicate_task_name (the default).
  replace, ///< Cancel the older task (without waiting for it) and register the new one.
};

/// Named tasks, by name and in registration order.
///
/// A finished task stays registered (Sanic's behaviour) until purge() removes it, or until another
/// task is registered under its name, which is allowed at once.
///
/// Thread safety: every member may be called from any thread.
class registry {
public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;
  ~registry() { clear(); }

  /// Registers a named task, last in order, and returns the task that held the name before, if
  /// any, unregistered. If that task has not finished, throws duplicate_task_name, unless
  /// `on_conflict` is name_conflict::replace (the caller then cancels it). A finished task's name
  /// is free at once. The returned handle may be the last reference to that task: release it with
  /// no lock held, since a failed task reports to the exception handler as it goes.
  std::optional<Task<>> insert(const Task<>& task, name_conflict on_conflict) {
    const auto& state = task.state_;
    std::optional<Task<>> previous;
    std::lock_guard<detail::small_mutex> lock(mutex_);
    auto [it, inserted] =
        index_.try_emplace(name_key{state->name()}, state); // one probe, if the name is free
    if (!inserted) {
      if (on_conflict == name_conflict::error && !it->second->finished())
        throw duplicate_task_name(state->name());
      previous = Task<>(std::move(it->second));
      order_.erase(*previous->state_);
      // The new holder takes the entry over, its key made to view the same characters in the new
      // holder's name: nothing is allocated, so the takeover cannot fail halfway, with the
      // previous holder unregistered and the new one not.
      it->first.view = state->name();
      it->second = state;
    }
    order_.push_back(*state);
    return previous;
  }

  /// The task registered under `name`, if any.
  [[nodiscard]] TASKYARD_DETAIL_FLATTEN std::optional<Task<>> find(std::string_view name) const {
    // Inlined whole: called, the hash, the comparison, the unlock and the handle's copy each spill
    // and reload what the lookup holds in registers, and a lookup among a million names took
    // about a fifth longer (W5 in the README).
    std::lock_guard<detail::small_mutex> lock(mutex_);
    auto it = index_.find(name);
    if (it == index_.end()) return std::nullopt;
    return Task<>(it->second);
  }

  /// Unregisters `task` if it is the one registered under its name. Returns true if it was.
  bool erase(const Task<>& task) {
    std::lock_guard<detail::small_mutex> lock(mutex_);
    auto it = index_.find(task.state_->name());
    if (it == index_.end() || it->second != task.state_) return false;
    order_.erase(*it->second);
    index_.erase(it);
    return true;
  }

  /// Unregisters every finished task (succeeded, failed or cancelled). Returns how many.
  std::size_t purge() {
    std::vector<std::shared_ptr<detail::task_state_base>> removed; // released after the lock
    {
      std::lock_guard<detail::small_mutex> lock(mutex_);
      for (detail::task_state_base* s = order_.front(); s != nullptr;) {
        detail::task_state_base* next = order_type::next(*s);
        if (s->finished()) {
          if (removed.capacity() == 0) removed.swap(spare_);
          auto it = index_.find(s->name());
          removed.push_back(std::move(it->second));
          order_.erase(*s);
          index_.erase(it);
        }
        s = next;
      }
    }
    const std::size_t count = removed.size();
    // Releasing a failed task reports its failure, and the handler may purge again: that purge
    // finds no spare buffer, or one that another thread has given back meanwhile.
    removed.clear();
    if (removed.capacity() != 0 && removed.capacity() <= max_spare) {
      std::lock_guard<detail::small_mutex> lock(mutex_);
      if (removed.capacity() > spare_.capacity()) spare_.swap(removed);
    }
    return count;
  }

  /// Every registered task, in registration order.
  [[nodiscard]] std::vector<Task<>> snapshot() const {
    std::lock_guard<detail::small_mutex> lock(mutex_);
    std::vector<Task<>> out;
    out.reserve(index_.size());
    for (detail::task_state_base* s = order_.front(); s != nullptr; s = order_type::next(*s))
      out.push_back(Task<>(index_.find(s->name())->second));
    return out;
  }

  /// How many tasks are registered.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard<detail::small_mutex> lock(mutex_);
    return index_.size();
  }

  /// Unregisters every task.
  void clear() {
    index_type dropped;
    {
      std::lock_guard<detail::small_mutex> lock(mutex_);
      for (detail::task_state_base* s = order_.release_all(); s != nullptr;) {
        detail::task_state_base* next = order_type::next(*s);
        s->registry_links = {};
        s = next;
      }
      dropped.swap(index_);
    }
  }

private:
  using order_type =
      detail::intrusive_list<detail::task_state_base, &detail::task_state_base::registry_links>;

  // A key views the name inside the state its entry holds. The view is mutable so that a task that
  // takes a name over from a finished one can take its entry over too (see insert): only ever with
  // the same characters, so that the key's hash and place in the map stay what they were.
  struct name_key {
    mutable std::string_view view;
    // NOLINTNEXTLINE(google-explicit-constructor): what the hash and the comparison take
    operator std::string_view() const noexcept { return view; }
  };
  // Open addressing: a lookup among a million names touches the map's metadata, one slot and the
  // state, rather than a bucket, a node and the state. Only ever looked up by key, so that elements
  // moving on rehash does not matter.
  using index_type = boost::unordered_flat_map<name_key, std::shared_ptr<detail::task_state_base>,
                                               detail::name_hash, detail::name_equal>;

  // What purge() removes is released after the lock, from a vector kept between purges: grown anew
  // for each purge, it would make one large allocation after another, each of which makes glibc
  // consolidate the small chunks the tasks just freed, so the next tasks split them again. A purge
  // that removes more than max_spare tasks grows a vector of its own, and keeps none.
  static constexpr std::size_t max_spare = 4096;

  mutable detail::small_mutex mutex_;
  index_type index_;
  std::vector<std::shared_ptr<detail::task_state_base>> spare_; // empty, with capacity
  order_type order_;                                            // registration order
};

} // namespace taskyard

#endif // TASKYARD_REGISTRY_HPP
