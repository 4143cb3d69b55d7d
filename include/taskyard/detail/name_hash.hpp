//
// taskyard/detail/name_hash.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// How the registry hashes and compares task names. A lookup among many names is a few cache
// misses in a row (the map's metadata, its slot, the task's state) with the hash and the
// comparison between them, and a server's names are short ("conn-4711", a client id): for those,
// both are a handful of instructions on whole words here, where boost::hash<std::string_view>
// mixes the name four bytes at a time and the flat map mixes its result once more, and
// std::string_view's comparison calls memcmp.
//
// The hash is after wyhash's (Wang Yi's, in the public domain). A name of up to 16 bytes is read
// as two words: two 64-bit ones, overlapping, from 8 bytes; two 32-bit ones from 4; its first,
// middle and last bytes below that. A longer name is read 16 bytes a round. The words are folded
// with constants by 64x64->128-bit multiplies whose halves are XORed. The result avalanches, which
// the name_hash type tells boost::unordered_flat_map, so that the map uses it as it is. It is not
// keyed: like boost::hash, it is not meant to resist names chosen to collide.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_NAME_HASH_HPP
#define TASKYARD_DETAIL_NAME_HASH_HPP

#include <taskyard/detail/compiler.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace taskyard::detail {

/// The bytes at `p` as an unsigned integer (in the machine's byte order); `p` need not be aligned.
template <typename Word>
TASKYARD_DETAIL_ALWAYS_INLINE Word load_word(const char* p) noexcept {
  Word w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

/// fold_multiply without a 128-bit integer type: from four 32x32->64-bit products.
constexpr std::uint64_t fold_multiply_portable(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t a_lo = a & 0xffffffffu;
  const std::uint64_t a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xffffffffu;
  const std::uint64_t b_hi = b >> 32;
  const std::uint64_t lo_lo = a_lo * b_lo;
  const std::uint64_t hi_lo = a_hi * b_lo;
  const std::uint64_t lo_hi = a_lo * b_hi;
  const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi; // cannot overflow
  const std::uint64_t low = (cross << 32) | (lo_lo & 0xffffffffu);
  const std::uint64_t high = a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
  return low ^ high;
}

/// The two halves of the 128-bit product of `a` and `b`, XORed: what mixes the hash.
TASKYARD_DETAIL_ALWAYS_INLINE std::uint64_t fold_multiply(std::uint64_t a,
                                                          std::uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
  __extension__ using wide = unsigned __int128;
  const wide product = static_cast<wide>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
#else
  return fold_multiply_portable(a, b);
#endif
}

/// Hashes a name (see above). Transparent: any type that converts to std::string_view is hashed
/// as its characters.
struct name_hash {
  using is_transparent = void;
  using is_avalanching = std::true_type; // boost::unordered_flat_map then uses it as it is

  TASKYARD_DETAIL_ALWAYS_INLINE std::size_t operator()(std::string_view name) const noexcept {
    const char* p = name.data();
    const std::size_t n = name.size();
    std::uint64_t seed = seed0;
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    if (n <= 16) {
      if (n >= 8) {
        a = load_word<std::uint64_t>(p);
        b = load_word<std::uint64_t>(p + n - 8);
      } else if (n >= 4) {
        a = load_word<std::uint32_t>(p);
        b = load_word<std::uint32_t>(p + n - 4);
      } else if (n > 0) {
        a = (std::uint64_t{static_cast<unsigned char>(p[0])} << 16) |
            (std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
            std::uint64_t{static_cast<unsigned char>(p[n - 1])};
      }
    } else {
      std::size_t left = n;
      for (; left > 16; p += 16, left -= 16)
        seed = fold_multiply(load_word<std::uint64_t>(p) ^ seed1,
                             load_word<std::uint64_t>(p + 8) ^ seed);
      a = load_word<std::uint64_t>(p + left - 16); // the last 16 bytes, overlapping the rounds'
      b = load_word<std::uint64_t>(p + left - 8);
    }
    return static_cast<std::size_t>(fold_multiply(seed2 ^ n, fold_multiply(a ^ seed1, b ^ seed)));
  }

private:
  static constexpr std::uint64_t seed0 = 0x243f6a8885a308d3; // digits of pi
  static constexpr std::uint64_t seed1 = 0xa0761d6478bd642f; // wyhash's secrets
  static constexpr std::uint64_t seed2 = 0xe7037ed1a0b428db;
};

/// Compares two names, as std::string_view's == does. Transparent, as name_hash.
struct name_equal {
  using is_transparent = void;

  TASKYARD_DETAIL_ALWAYS_INLINE bool operator()(std::string_view x,
                                                std::string_view y) const noexcept {
    const std::size_t n = x.size();
    if (n != y.size()) return false;
    const char* p = x.data();
    const char* q = y.data();
    if (n >= 8 && n <= 16) // two words, overlapping, cover the name
      return ((load_word<std::uint64_t>(p) ^ load_word<std::uint64_t>(q)) |
              (load_word<std::uint64_t>(p + n - 8) ^ load_word<std::uint64_t>(q + n - 8))) == 0;
    if (n >= 4 && n < 8)
      return ((load_word<std::uint32_t>(p) ^ load_word<std::uint32_t>(q)) |
              (load_word<std::uint32_t>(p + n - 4) ^ load_word<std::uint32_t>(q + n - 4))) == 0;
    return x == y;
  }
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_NAME_HASH_HPP
