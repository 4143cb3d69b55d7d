//
// bench/alloc_counter.cpp
// ~~~~~~~~~~~~~~~~~~~~~~~
//
// Replaces glibc's malloc family with the same functions plus counters. Relaxed atomics: the
// benchmarks are single-threaded, the counters only need to be exact there. (A tool that
// interposes malloc itself, such as heaptrack, does not see through this: profile a build without
// it, TASKYARD_BENCH_COUNT_ALLOCATIONS=OFF.)
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#include "alloc_counter.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <malloc.h>
#include <unistd.h>

namespace {

// glibc gives the top of the heap back to the system whenever more than 128 KiB is free there, and
// a workload that frees a batch of tasks and allocates the next one then pays page faults for
// every batch: kernel time in the benchmark's CPU time, and more for the side that frees more at
// once. A server's heap does not shrink and grow like that, so neither does the benchmark's. (W3's
// RSS readings trim the heap explicitly.)
const bool heap_kept = [] {
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  return true;
}();

std::atomic<std::size_t> allocations{0};
std::atomic<std::size_t> bytes{0};
std::atomic<std::size_t> live_bytes{0};
std::atomic<std::size_t> peak_live_bytes{0};

} // namespace

#ifndef TASKYARD_BENCH_NO_COUNTING

// glibc's own entry points, which the replacements below call.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

void* note_allocation(void* p, std::size_t n) noexcept {
  if (p == nullptr) return p;
  allocations.fetch_add(1, std::memory_order_relaxed);
  bytes.fetch_add(n, std::memory_order_relaxed);
  const std::size_t usable = malloc_usable_size(p);
  const std::size_t live = live_bytes.fetch_add(usable, std::memory_order_relaxed) + usable;
  std::size_t peak = peak_live_bytes.load(std::memory_order_relaxed);
  while (live > peak &&
         !peak_live_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {}
  return p;
}

void note_free(void* p) noexcept {
  if (p != nullptr) live_bytes.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
}

} // namespace

// The C allocation functions are replaced, not operator new: Asio allocates its frames and
// operations with aligned_alloc, and libstdc++'s operator new calls malloc, so counting here
// counts both.
extern "C" {

void* malloc(std::size_t n) { return note_allocation(__libc_malloc(n), n); }

void* calloc(std::size_t count, std::size_t size) {
  return note_allocation(__libc_calloc(count, size), count * size);
}

void* realloc(void* p, std::size_t n) {
  note_free(p);
  void* q = __libc_realloc(p, n);
  if (q == nullptr && p != nullptr && n != 0) { // p is still there
    live_bytes.fetch_add(malloc_usable_size(p), std::memory_order_relaxed);
    return q;
  }
  return note_allocation(q, n);
}

void* memalign(std::size_t align, std::size_t n) {
  return note_allocation(__libc_memalign(align, n), n);
}

void* aligned_alloc(std::size_t align, std::size_t n) { return memalign(align, n); }

int posix_memalign(void** out, std::size_t align, std::size_t n) {
  void* p = memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void free(void* p) {
  note_free(p);
  __libc_free(p);
}

} // extern "C"

#endif // TASKYARD_BENCH_NO_COUNTING

namespace taskyard_bench {

alloc_totals alloc_now() noexcept {
  return {allocations.load(std::memory_order_relaxed), bytes.load(std::memory_order_relaxed),
          live_bytes.load(std::memory_order_relaxed),
          peak_live_bytes.load(std::memory_order_relaxed)};
}

void reset_peak() noexcept {
  peak_live_bytes.store(live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

std::size_t rss_now() noexcept {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  const int read = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (read != 2) return 0;
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

bool reset_peak_rss() noexcept {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool written = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && written;
}

std::size_t peak_rss() noexcept {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f) != nullptr)
    found = std::sscanf(line, "VmHWM: %lu kB", &kib) == 1;
  std::fclose(f);
  return found ? static_cast<std::size_t>(kib) * 1024 : 0;
}

void trim_heap() noexcept {
  (void)heap_kept;
  malloc_trim(0);
}

} // namespace taskyard_bench
