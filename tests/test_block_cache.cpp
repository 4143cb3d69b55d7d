#include <taskyard/app.hpp>
#include <taskyard/detail/block_cache.hpp>

#include <catch2/catch.hpp>

// The per-thread cache of freed blocks that task states, and the operations submitted to their
// executors, are allocated from: reuse by size, its bound, what it leaves to operator new, threads,
// and that an App's tasks really use it. Under AddressSanitizer, the leak check at exit also shows
// that each thread frees what it cached, and cached blocks must be poisoned.

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace asio = boost::asio;
using taskyard::detail::block_cache;
using taskyard::detail::cached_allocator;

// This test program replaces operator new and delete, to see when a block goes back to the heap;
// except under AddressSanitizer, whose own replacements must stay (it checks that what operator new
// allocated is given to operator delete), and whose leak check at exit sees a block never freed.
namespace {
std::atomic<void*> watched{nullptr};
std::atomic<bool> watched_freed{false};

void watch(void* p) {
  watched_freed = false;
  watched = p;
}
} // namespace

#ifdef TEST_ASAN
#define CHECK_WATCHED_FREED() SUCCEED("the leak check at exit sees whether it was freed")
#define CHECK_WATCHED_NOT_FREED(was_freed) ((void)(was_freed))
#else
#define CHECK_WATCHED_FREED() CHECK(watched_freed)
#define CHECK_WATCHED_NOT_FREED(was_freed) CHECK_FALSE(was_freed)

void* operator new(std::size_t n) {
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  if (p != nullptr && p == watched.load()) watched_freed = true;
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
#endif

namespace {

/// Every test starts and ends with an empty cache on its thread.
struct empty_cache {
  empty_cache() { block_cache::release_this_thread(); }
  ~empty_cache() { block_cache::release_this_thread(); }
  empty_cache(const empty_cache&) = delete;
  empty_cache& operator=(const empty_cache&) = delete;
};

asio::awaitable<void> nothing() { co_return; }

} // namespace

TEST_CASE("a freed block goes to the next allocation of its size on the same thread",
          "[block_cache]") {
  empty_cache guard;
  void* a = block_cache::allocate(296);
  block_cache::deallocate(a, 296);
  CHECK(block_cache::cached_bytes_this_thread() == 296);

  // Sizes are rounded up to 8 bytes: 290 is served by the block of 296.
  void* b = block_cache::allocate(290);
  CHECK(b == a);
  CHECK(block_cache::cached_bytes_this_thread() == 0);
  block_cache::deallocate(b, 290);

  // Another size class does not get it.
  void* c = block_cache::allocate(304);
  CHECK(c != a);
  CHECK(block_cache::cached_bytes_this_thread() == 296);
  block_cache::deallocate(c, 304);
  CHECK(block_cache::cached_bytes_this_thread() == 296 + 304);

  block_cache::release_this_thread();
  CHECK(block_cache::cached_bytes_this_thread() == 0);
}

TEST_CASE("the cache holds at most TASKYARD_BLOCK_CACHE_BYTES, and nothing over 1 KiB",
          "[block_cache]") {
  empty_cache guard;
  constexpr std::size_t size = block_cache::max_block;
  const std::size_t fits = block_cache::max_bytes / size;
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < fits + 10; ++i) blocks.push_back(block_cache::allocate(size));
  for (void* p : blocks) block_cache::deallocate(p, size);
  CHECK(block_cache::cached_bytes_this_thread() == fits * size);

  block_cache::release_this_thread();
  void* big = block_cache::allocate(size + 1);
  block_cache::deallocate(big, size + 1);
  CHECK(block_cache::cached_bytes_this_thread() == 0);
}

TEST_CASE("a block freed on another thread goes to that thread's cache, if it has one",
          "[block_cache]") {
  empty_cache guard;
  void* a = block_cache::allocate(128);
  void* b = block_cache::allocate(128);
  std::size_t cached_there = 0;
  bool freed_before_exit = true;
  watch(a);
  std::thread user([&] {
    block_cache::deallocate(block_cache::allocate(64), 64); // this thread now has a cache
    block_cache::deallocate(a, 128);
    cached_there = block_cache::cached_bytes_this_thread();
    freed_before_exit = watched_freed;
  });
  user.join();
  CHECK(cached_there == 64 + 128);
  CHECK_WATCHED_NOT_FREED(freed_before_exit);
  CHECK_WATCHED_FREED(); // the thread freed what it cached as it exited
  CHECK(block_cache::cached_bytes_this_thread() == 0);

  std::size_t cached_in_freer = 1;
  watch(b);
  std::thread freer([&] {
    block_cache::deallocate(b, 128); // no cache here: straight to operator delete
    cached_in_freer = block_cache::cached_bytes_this_thread();
  });
  freer.join();
  CHECK(cached_in_freer == 0);
  CHECK_WATCHED_FREED();
}

namespace {

/// Frees a block from a thread_local destructor that runs after the cache's own.
struct frees_at_exit {
  void* block = nullptr;
  ~frees_at_exit() { block_cache::deallocate(block, 200); }
};

} // namespace

TEST_CASE("a block freed while its thread exits, after the cache is gone, goes to operator delete",
          "[block_cache]") {
  std::size_t cached_before_exit = 0;
  std::thread t([&] {
    static thread_local frees_at_exit holder;  // constructed first, so destroyed last
    holder.block = block_cache::allocate(200); // makes the cache, destroyed before holder
    watch(holder.block);
    block_cache::deallocate(block_cache::allocate(200), 200);
    cached_before_exit = block_cache::cached_bytes_this_thread();
  });
  t.join();
  CHECK(cached_before_exit == 200);
  // Had it gone into the destroyed cache, it would never have been freed.
  CHECK_WATCHED_FREED();
}

TEST_CASE("a type with an extended alignment bypasses the cache", "[block_cache]") {
  empty_cache guard;
  struct alignas(64) wide {
    char bytes[64];
  };
  cached_allocator<wide> alloc;
  wide* p = alloc.allocate(1);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  alloc.deallocate(p, 1);
  CHECK(block_cache::cached_bytes_this_thread() == 0);
}

#ifdef TEST_ASAN
TEST_CASE("under AddressSanitizer a cached block is poisoned until it is handed out again",
          "[block_cache]") {
  empty_cache guard;
  auto* p = static_cast<char*>(block_cache::allocate(96));
  block_cache::deallocate(p, 96);
  CHECK(__asan_address_is_poisoned(p + 40) != 0);
  CHECK(__asan_address_is_poisoned(p + 8) != 0);
  // Its first 8 bytes link it to the next cached block, which the leak check must be able to
  // follow.
  CHECK(__asan_address_is_poisoned(p) == 0);
  auto* q = static_cast<char*>(block_cache::allocate(96));
  REQUIRE(q == p);
  CHECK(__asan_address_is_poisoned(q + 40) == 0);
  block_cache::deallocate(q, 96);
}
#endif

TEST_CASE("an App's task states come from the cache of the thread that adds them",
          "[block_cache]") {
  empty_cache guard;
  asio::io_context ioc{1};
  std::size_t cached_after_first = 0;
  {
    taskyard::App app("blocks", ioc);
    asio::co_spawn(ioc, app.serve(), asio::detached);
    ioc.poll();
    app.add_task(nothing(), "first");
    ioc.poll();
    REQUIRE(app.get_task("first").done());
    REQUIRE(app.purge_tasks() == 1); // the last reference: the state's block is cached
    cached_after_first = block_cache::cached_bytes_this_thread();
    CHECK(cached_after_first > 0);

    // The next task of the same type takes it back (its start operation's block too).
    auto second = app.add_task(nothing(), "second");
    CHECK(block_cache::cached_bytes_this_thread() < cached_after_first);
    ioc.poll();
    CHECK(second.done());
    app.stop();
    ioc.restart();
    ioc.run();
  }
}

namespace {

/// An allocator that counts what it allocates: an allocator of the user's own.
template <typename T>
struct counting_allocator {
  using value_type = T;
  std::size_t* count;
  explicit counting_allocator(std::size_t* c) noexcept : count(c) {}
  template <typename U>
  counting_allocator(const counting_allocator<U>& other) noexcept : count(other.count) {}
  T* allocate(std::size_t n) {
    ++*count;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <typename U>
  friend bool operator==(const counting_allocator& a, const counting_allocator<U>& b) noexcept {
    return a.count == b.count;
  }
};

/// Submits two functions through a task's executor on `ioc`, one after the other, and checks that
/// the second one's operation reuses the first one's block.
void check_operations_from_cache(asio::io_context& ioc, int& ran) {
  auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
  const taskyard::detail::task_executor<asio::io_context::executor_type> ex(ioc.get_executor(),
                                                                            gates.acquire());
  ex.execute([&ran] { ++ran; });
  ioc.poll(); // the operation's block is freed before its function runs: it is cached now
  const std::size_t cached = block_cache::cached_bytes_this_thread();
  REQUIRE(cached > 0);

  ex.execute([&ran] { ++ran; });
  CHECK(block_cache::cached_bytes_this_thread() < cached); // the next one takes it back
  ioc.restart();
  ioc.poll();
  CHECK(ran == 2);
  CHECK(block_cache::cached_bytes_this_thread() == cached);
}

} // namespace

TEST_CASE("the operations a task's executor submits come from the cache, unless it was given "
          "an allocator",
          "[block_cache]") {
  empty_cache guard;
  int ran = 0;
  SECTION("on an io_context made for one thread") {
    asio::io_context ioc{1};
    check_operations_from_cache(ioc, ran);

    std::size_t own = 0;
    auto& gates = asio::use_service<taskyard::detail::gate_pool>(ioc);
    const taskyard::detail::task_executor<asio::io_context::executor_type> ex(ioc.get_executor(),
                                                                              gates.acquire());
    const std::size_t cached = block_cache::cached_bytes_this_thread();
    const auto with_own =
        asio::require(ex, asio::execution::allocator(counting_allocator<void>(&own)));
    with_own.execute([&ran] { ++ran; });
    CHECK(own == 1); // the user's allocator, not the cache
    CHECK(block_cache::cached_bytes_this_thread() == cached);
    ioc.restart();
    ioc.poll();
    CHECK(ran == 3);
  }
  SECTION("on a strand") {
    asio::io_context ioc;
    REQUIRE(asio::use_service<taskyard::detail::gate_pool>(ioc).strands());
    check_operations_from_cache(ioc, ran);
  }
}
