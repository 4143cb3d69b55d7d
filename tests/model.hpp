// The operation alphabet of the model-based tests, and the reference model they are checked
// against: shared by the stress test (tests/test_stress.cpp, operations drawn from a seeded
// generator, two driver threads) and the fuzz target (fuzz/fuzz_operations.cpp, operations decoded
// from the fuzzer's input, one driver thread).
//
// A driver owns a set of names (those beginning with its prefix letter), so its model of "what is
// registered under my names" is exact: every operation is checked against it as it is applied,
// and at quiescent points (every driver parked, every task that can finish finished) the whole
// registry, the purge count and the live-frame count are checked exactly. What goes wrong is
// collected in a `violations`, for the driver to report.
#ifndef TASKYARD_TESTS_MODEL_HPP
#define TASKYARD_TESTS_MODEL_HPP

#include <taskyard/app.hpp>

#include "support.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test::model {

using taskyard::App;
using taskyard::Task;

/// What a task's body does.
enum class kind { quick, yields, forever, throws, on_event };
constexpr int kinds = 5;

/// How many names each driver uses: few, so that operations meet on the same names.
constexpr std::uint64_t names_per_driver = 24;

struct model_task {
  Task<> handle;
  kind k;
  std::shared_ptr<std::atomic<bool>> started; // set by the body, once its frame exists
  bool cancel_requested = false;
};

/// Everything a driver knows of its own names, and its unnamed tasks.
struct model {
  std::map<std::string, model_task> registered;
  std::vector<model_task> unnamed;
  std::vector<Task<>> throwers; // kept to the end: a cancelled one ends cancelled, not failed
};

inline asio::awaitable<void> body(App& app, kind k, std::string event,
                                  std::shared_ptr<std::atomic<bool>> started) {
  test::frame_probe probe;
  *started = true;
  switch (k) {
  case kind::quick:
    co_return;
  case kind::yields:
    co_await test::yield();
    co_return;
  case kind::forever:
    co_await test::suspend_forever();
    co_return;
  case kind::throws:
    co_await test::yield();
    throw std::runtime_error("model failure");
  case kind::on_event:
    co_await app.event(event);
    co_return;
  }
}

inline bool finishes_by_itself(const model_task& t) {
  return t.k != kind::forever && t.k != kind::on_event;
}

/// Records what a driver saw go wrong; asserted by whoever runs the drivers.
class violations {
public:
  void add(std::string what) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (list_.size() < 20) list_.push_back(std::move(what));
    ++count_;
  }
  [[nodiscard]] std::size_t count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
  [[nodiscard]] std::string report() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& v : list_) out += v + '\n';
    return out;
  }

private:
  mutable std::mutex mutex_;
  std::vector<std::string> list_;
  std::size_t count_ = 0;
};

/// Spins, yielding the thread, until `done()` holds: waits on a state, never on a duration.
template <typename Pred>
void until(Pred done) {
  while (!done()) std::this_thread::yield();
}

/// One operation, as a driver draws it: which of its names, which kind of task, which operation
/// (`choice` in [0, 100): the ranges below weigh them), and which unnamed task (`victim`, modulo
/// their number) when the operation needs one.
struct operation {
  std::uint64_t name_index = 0; // < names_per_driver
  kind k = kind::quick;
  std::uint64_t choice = 0; // < 100
  std::uint64_t victim = 0;
};

/// One driver: its model, its prefix letter (its names are the prefix and a number) and its event.
struct driver {
  explicit driver(char p) : prefix(p), event(std::string("event.") + p) {}
  model m;
  char prefix;
  std::string event;
};

/// Applies `op` to the App and checks what it did against the driver's model.
inline void apply(App& app, driver& d, const operation& op, std::uint64_t op_number,
                  violations& seen) {
  model& m = d.m;
  auto fail = [&](const std::string& what) {
    std::ostringstream out;
    out << "driver " << d.prefix << " op " << op_number << ": " << what;
    seen.add(out.str());
  };
  const std::string name = std::string(1, d.prefix) + std::to_string(op.name_index);
  auto started = std::make_shared<std::atomic<bool>>(false);
  try {
    if (op.choice < 30) { // add a named task
      auto it = m.registered.find(name);
      const bool held = it != m.registered.end();
      // Only a task that cannot end by itself, and was not cancelled, surely still holds it.
      const bool must_refuse =
          held && it->second.k == kind::forever && !it->second.cancel_requested;
      try {
        Task<> t = app.add_task(body(app, op.k, d.event, started), name);
        if (op.k == kind::throws) m.throwers.push_back(t);
        if (must_refuse) fail("duplicate name accepted: " + name);
        if (held && !it->second.handle.done()) fail("a live task's name was taken over: " + name);
        m.registered[name] = model_task{t, op.k, started};
      } catch (const taskyard::duplicate_task_name&) {
        if (!held) fail("duplicate_task_name for a free name: " + name);
      }
    } else if (op.choice < 40) { // add an unnamed task
      m.unnamed.push_back(
          model_task{app.add_task(body(app, op.k, d.event, started)), op.k, started});
      if (op.k == kind::throws) m.throwers.push_back(m.unnamed.back().handle);
    } else if (op.choice < 55) { // look a name up
      auto it = m.registered.find(name);
      auto found = app.find_task(name);
      if (it == m.registered.end()) {
        if (found) fail("find_task found a name the model does not hold: " + name);
        try {
          (void)app.get_task(name);
          fail("get_task did not throw for " + name);
        } catch (const taskyard::task_not_found&) {}
      } else if (!found || !(*found == it->second.handle) ||
                 !(app.get_task(name) == it->second.handle)) {
        fail("lookup returned another task for " + name);
      }
    } else if (op.choice < 70) { // cancel a task
      auto it = m.registered.find(name);
      if (it != m.registered.end()) {
        const bool was_done = it->second.handle.done();
        const bool took = it->second.handle.cancel("model");
        if (took && was_done) fail("cancel() took effect on a finished task");
        it->second.cancel_requested = it->second.cancel_requested || took;
      } else if (!m.unnamed.empty()) {
        auto& t = m.unnamed[op.victim % m.unnamed.size()];
        t.cancel_requested = t.handle.cancel() || t.cancel_requested;
      }
    } else if (op.choice < 85) { // list the tasks
      std::vector<std::string> live_before;
      for (auto& [n, t] : m.registered)
        if (!t.handle.done()) live_before.push_back(n);
      auto snapshot = app.tasks();
      for (const auto& n : live_before) {
        bool listed = false;
        for (const auto& t : snapshot) listed = listed || t.name() == n;
        if (!listed) fail("tasks() misses a live task: " + n);
      }
    } else if (op.choice < 95) { // dispatch this driver's event
      (void)app.dispatch(d.event);
    } else { // empty names are refused
      try {
        (void)app.find_task("");
        fail("find_task(\"\") did not throw");
      } catch (const taskyard::invalid_task_name&) {}
    }
  } catch (const std::exception& e) {
    fail(std::string("unexpected exception: ") + e.what());
  }
}

/// Lets every task of the driver's settle: those that finish by themselves or were cancelled are
/// done, the others have started, and those waiting on its event are released and done.
inline void settle(App& app, driver& d) {
  model& m = d.m;
  // Every task of the driver's, named or not (no structured bindings: clang 14 cannot capture them
  // in the lambdas below).
  std::vector<model_task*> all;
  for (auto& entry : m.registered) all.push_back(&entry.second);
  for (auto& t : m.unnamed) all.push_back(&t);
  for (model_task* t : all)
    if (finishes_by_itself(*t) || t->cancel_requested) until([t] { return t->handle.done(); });
  // The others have started (a start is queued, never inline), so each has its frame.
  for (model_task* t : all) until([t] { return t->started->load() || t->handle.done(); });
  // Tasks waiting on the driver's event are released (one may not be waiting yet, or be on its
  // way out after an earlier dispatch), until all are done.
  until([&] {
    bool all_done = true;
    for (model_task* t : all) all_done = all_done && (t->k != kind::on_event || t->handle.done());
    if (!all_done) app.dispatch(d.event);
    return all_done;
  });
}

/// At a quiescent point (every driver settled and parked): the registry holds exactly what the
/// models hold, exactly the unfinished tasks have frames, and purge_tasks removes exactly the
/// finished ones, which the models then forget too.
inline void check_everything(App& app, std::span<driver*> drivers, violations& seen) {
  auto driver_of = [&](const std::string& name) -> driver* {
    for (driver* d : drivers)
      if (!name.empty() && name[0] == d->prefix) return d;
    return nullptr;
  };
  auto snapshot = app.tasks();
  std::size_t expected = 0;
  for (driver* d : drivers) expected += d->m.registered.size();
  if (snapshot.size() != expected)
    seen.add("registry holds " + std::to_string(snapshot.size()) + " tasks, models " +
             std::to_string(expected));
  for (const auto& t : snapshot) {
    bool known = false;
    if (driver* d = driver_of(t.name())) {
      auto it = d->m.registered.find(t.name());
      known = it != d->m.registered.end() && it->second.handle == t;
    }
    if (!known) seen.add("registry holds a task the model does not: " + t.name());
  }
  int unfinished = 0;
  std::size_t finished_registered = 0;
  for (driver* d : drivers) {
    for (auto& [name, t] : d->m.registered) {
      if (t.handle.done())
        ++finished_registered;
      else
        ++unfinished;
    }
    for (auto& t : d->m.unnamed)
      if (!t.handle.done()) ++unfinished;
  }
  if (test::live_frames != unfinished)
    seen.add("live frames " + std::to_string(test::live_frames) + ", unfinished tasks " +
             std::to_string(unfinished));
  const std::size_t purged = app.purge_tasks();
  if (purged != finished_registered)
    seen.add("purge_tasks() removed " + std::to_string(purged) + ", expected " +
             std::to_string(finished_registered));
  for (driver* d : drivers) {
    std::erase_if(d->m.registered, [](const auto& entry) { return entry.second.handle.done(); });
    std::erase_if(d->m.unnamed, [](const auto& t) { return t.handle.done(); });
  }
}

/// After the App has shut down: every task of the driver's is done.
inline void check_all_done(const driver& d, violations& seen) {
  for (const auto& [name, t] : d.m.registered)
    if (!t.handle.done()) seen.add("after shutdown, not done: " + name);
  for (const auto& t : d.m.unnamed)
    if (!t.handle.done()) seen.add("after shutdown, an unnamed task is not done");
}

/// How many of the driver's failing tasks failed (a cancelled one did not).
inline int failed_throwers(const driver& d) {
  int failed = 0;
  for (const auto& t : d.m.throwers) failed += t.failed() ? 1 : 0;
  return failed;
}

} // namespace test::model

#endif // TASKYARD_TESTS_MODEL_HPP
