//
// bench/alloc_counter.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~
//
// What the benchmarks measure besides time: heap allocations (a replacement of glibc's malloc
// family, in alloc_counter.cpp, counts them) and the process's resident set size.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_BENCH_ALLOC_COUNTER_HPP
#define TASKYARD_BENCH_ALLOC_COUNTER_HPP

#include <cstddef>

namespace taskyard_bench {

/// Totals since the program started. `live_bytes` and `peak_live_bytes` count usable sizes (what
/// malloc really handed out); `bytes` counts what was asked for.
struct alloc_totals {
  std::size_t allocations = 0;
  std::size_t bytes = 0;
  std::size_t live_bytes = 0;
  std::size_t peak_live_bytes = 0;
};

alloc_totals alloc_now() noexcept;

/// Restarts the peak of live bytes from the current live bytes.
void reset_peak() noexcept;

/// The resident set size now, in bytes (from /proc/self/statm).
std::size_t rss_now() noexcept;

/// Restarts the process's peak resident set size from its resident set size now (by writing 5 to
/// /proc/self/clear_refs, Linux 4.0 and later). Returns false if the system does not allow it.
bool reset_peak_rss() noexcept;

/// The process's peak resident set size in bytes (VmHWM in /proc/self/status), or 0 if unknown.
std::size_t peak_rss() noexcept;

/// Gives freed heap memory back to the system, so that an RSS difference measures live memory.
void trim_heap() noexcept;

} // namespace taskyard_bench

#endif // TASKYARD_BENCH_ALLOC_COUNTER_HPP
