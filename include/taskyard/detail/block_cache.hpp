//
// taskyard/detail/block_cache.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Where a task's state, the operations submitted to its executor (its start, its cancellation, the
// hops of its coroutine) and the waits on it get their memory: a cache of freed blocks on each
// thread, in front of operator new. A server adds and finishes tasks in bursts; given back to
// malloc, each burst of frees coalesces chunks that the next burst of adds splits again, and a task
// added from a thread that is not running the io_context bypasses Asio's own recycling. The cache
// hands a freed block to the next block of the same size instead, as Asio's recycling allocator
// does for its operations (whose cache holds two blocks per kind and thread, too few for a burst).
//
// A thread caches at most TASKYARD_BLOCK_CACHE_BYTES (1 MiB unless defined otherwise; 0 turns the
// cache off) and frees what it caches when it exits. Define the macro the same way in every
// translation unit. A block freed on another thread than the one that allocated it goes to the
// freeing thread's cache: every block comes from operator new, so any thread may free it. Blocks
// may so flow one way, from a thread that adds tasks to the threads that run them: the first then
// allocates from operator new, and each of the others caches no more than the bound.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_BLOCK_CACHE_HPP
#define TASKYARD_DETAIL_BLOCK_CACHE_HPP

#include <cstddef>
#include <new>

#ifndef TASKYARD_BLOCK_CACHE_BYTES
#define TASKYARD_BLOCK_CACHE_BYTES (std::size_t{1} << 20)
#endif

// Under AddressSanitizer a cached block is poisoned (all but its first 8 bytes, the link to the
// next cached block), so that a use after free is still reported.
#if defined(__SANITIZE_ADDRESS__)
#define TASKYARD_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TASKYARD_DETAIL_ASAN 1
#endif
#endif

#ifdef TASKYARD_DETAIL_ASAN
#include <sanitizer/asan_interface.h>
#define TASKYARD_DETAIL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TASKYARD_DETAIL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TASKYARD_DETAIL_POISON(p, n) ((void)(p), (void)(n))
#define TASKYARD_DETAIL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace taskyard::detail {

/// The calling thread's cache of freed blocks, by size: rounded up to a multiple of 8 bytes (which
/// costs nothing with glibc, whose chunks are multiples of 16 with 8 bytes of header), up to 1 KiB;
/// larger blocks are not cached. Thread safety: each thread has a cache of its own, reached only by
/// that thread.
class block_cache {
public:
  static constexpr std::size_t max_bytes = TASKYARD_BLOCK_CACHE_BYTES;
  static constexpr std::size_t step = 8;
  static constexpr std::size_t max_block = 1024;

  block_cache(const block_cache&) = delete;
  block_cache& operator=(const block_cache&) = delete;

  /// A block of `size` bytes, aligned for any type with no extended alignment.
  static void* allocate(std::size_t size) {
    if (!cacheable(size)) return ::operator new(size);
    size = rounded(size); // so that every block of a size class has the same size
    if (block_cache* c = mine(); c != nullptr) {
      if (void* p = c->take(size)) return p;
    }
    return ::operator new(size);
  }

  /// Gives back a block from allocate(size).
  static void deallocate(void* p, std::size_t size) noexcept {
    if (cacheable(size) && phase == phase_t::live && mine()->keep(p, rounded(size))) return;
    ::operator delete(p);
  }

  /// Frees every block the calling thread has cached (for a measurement that must see only the
  /// blocks in use).
  static void release_this_thread() noexcept {
    if (phase == phase_t::live) mine()->release();
  }

  /// How many bytes the calling thread has cached.
  [[nodiscard]] static std::size_t cached_bytes_this_thread() noexcept {
    return phase == phase_t::live ? mine()->bytes_ : 0;
  }

private:
  struct free_block {
    free_block* next;
  };

  static constexpr std::size_t classes = max_block / step;

  enum class phase_t : unsigned char { unused, live, gone };
  // Trivially destructible, so it can still be read while the thread exits, after the cache is
  // gone: a state freed then goes straight to operator delete.
  static inline thread_local phase_t phase = phase_t::unused;

  block_cache() noexcept { phase = phase_t::live; }
  ~block_cache() {
    release();
    phase = phase_t::gone;
  }

  static constexpr bool cacheable(std::size_t size) noexcept {
    return max_bytes != 0 && size != 0 && size <= max_block;
  }

  static constexpr std::size_t rounded(std::size_t size) noexcept {
    return (size + step - 1) / step * step;
  }

  static constexpr std::size_t index(std::size_t rounded_size) noexcept {
    return rounded_size / step - 1;
  }

  // The calling thread's cache, made on first use; null once the thread is exiting and its cache is
  // gone.
  static block_cache* mine() noexcept {
    if (phase == phase_t::gone) return nullptr;
    static thread_local block_cache cache;
    return &cache;
  }

  void* take(std::size_t size) noexcept {
    free_block*& head = heads_[index(size)];
    free_block* b = head;
    if (b == nullptr) return nullptr;
    TASKYARD_DETAIL_UNPOISON(b, size);
    head = b->next;
    bytes_ -= size;
    return b;
  }

  bool keep(void* p, std::size_t size) noexcept {
    if (bytes_ + size > max_bytes) return false;
    free_block*& head = heads_[index(size)];
    head = ::new (p) free_block{head};
    bytes_ += size;
    // All but the link: LeakSanitizer does not follow pointers in poisoned memory, and would
    // report every cached block but the first of each list as leaked.
    TASKYARD_DETAIL_POISON(static_cast<char*>(p) + sizeof(free_block), size - sizeof(free_block));
    return true;
  }

  void release() noexcept {
    for (std::size_t i = 0; i < classes; ++i) {
      while (free_block* b = heads_[i]) {
        TASKYARD_DETAIL_UNPOISON(b, (i + 1) * step);
        heads_[i] = b->next;
        ::operator delete(b);
      }
    }
    bytes_ = 0;
  }

  free_block* heads_[classes] = {};
  std::size_t bytes_ = 0;
};

/// A standard allocator over block_cache, for std::allocate_shared. Types with an extended
/// alignment bypass the cache.
template <typename T>
class cached_allocator {
public:
  using value_type = T;

  cached_allocator() noexcept = default;
  template <typename U>
  cached_allocator(const cached_allocator<U>&) noexcept {} // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{alignof(T)}));
    } else {
      return static_cast<T*>(block_cache::allocate(n * sizeof(T)));
    }
  }

  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      ::operator delete (p, std::align_val_t{alignof(T)});
    } else {
      block_cache::deallocate(p, n * sizeof(T));
    }
  }

  template <typename U>
  friend bool operator==(const cached_allocator&, const cached_allocator<U>&) noexcept {
    return true;
  }
};

} // namespace taskyard::detail

#undef TASKYARD_DETAIL_ASAN
#undef TASKYARD_DETAIL_POISON
#undef TASKYARD_DETAIL_UNPOISON

#endif // TASKYARD_DETAIL_BLOCK_CACHE_HPP
