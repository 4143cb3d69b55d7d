// libFuzzer target: the model-based stress test's operations (tests/model.hpp), decoded from the
// fuzzer's input instead of drawn from a seeded generator, applied by one driver thread to an App
// whose io_context runs on one or two threads, and checked against the same reference model.
//
// Input: one byte of settings (bit 0: the io_context runs on two threads), then four bytes per
// operation: which (byte % 101: below 100 an operation of test::model::apply, 100 a quiescent
// point where the whole App is checked against the model), which name (% 24), which kind of task
// (% 5), which unnamed task (for a cancel). At most 1000 operations; a quiescent point ends every
// input, and the App is then stopped and destroyed: nothing may be left alive.
//
// Any violation of the model is printed and aborts, as does any sanitizer report.

#include <taskyard/app.hpp>

#include "model.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

namespace model = test::model;
using taskyard::App;

namespace {

constexpr std::size_t max_operations = 1000;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_operations: %s\n", what.c_str());
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t threads = (data[0] & 1) != 0 ? 2 : 1;
  ++data;
  --size;

  test::live_frames = 0;
  model::violations seen;
  model::driver d{'a'};
  model::driver* all[1]{&d};
  std::atomic<int> handled_failures{0};
  {
    App app{"fuzz"};
    app.config().exception_handler = [&](std::string_view, std::exception_ptr) {
      ++handled_failures;
    };
    std::promise<void> started;
    app.after_server_start([&started] { started.set_value(); });
    std::thread server([&app, threads] { app.run({.threads = threads, .handle_signals = false}); });
    started.get_future().wait();

    std::uint64_t op = 0;
    for (; size >= 4 && op < max_operations; data += 4, size -= 4, ++op) {
      const std::uint64_t which = data[0] % 101;
      if (which == 100) {
        model::settle(app, d);
        model::check_everything(app, all, seen);
        continue;
      }
      model::operation o;
      o.choice = which;
      o.name_index = data[1] % model::names_per_driver;
      o.k = static_cast<model::kind>(data[2] % model::kinds);
      o.victim = data[3];
      model::apply(app, d, o, op, seen);
    }
    model::settle(app, d);
    model::check_everything(app, all, seen);
    app.stop();
    server.join();
    model::check_all_done(d, seen);
  }
  if (seen.count() != 0) fail("the App disagrees with the model:\n" + seen.report());
  if (test::live_frames != 0)
    fail(std::to_string(test::live_frames) +
         " coroutine frame(s) left after the App was destroyed");
  const int failed = model::failed_throwers(d);
  d.m = {};
  // Every failure nobody observed reached the handler exactly once (none was observed here).
  if (handled_failures != failed)
    fail(std::to_string(handled_failures) + " failure(s) reported to the handler, " +
         std::to_string(failed) + " task(s) failed");
  return 0;
}
