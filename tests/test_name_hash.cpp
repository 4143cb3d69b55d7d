#include <taskyard/detail/name_hash.hpp>

#include <catch2/catch.hpp>

// The registry's hash and comparison of names: that the comparison says what std::string_view's ==
// says, for every length and every place two names may differ; that the hash tells apart names
// that differ anywhere; and that over a million names of the shapes servers use it spreads evenly
// over both parts of the hash that boost::unordered_flat_map uses (the high bits choose a group of
// slots, the low byte is kept in the group's metadata), since the map takes it as it is.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using taskyard::detail::name_equal;
using taskyard::detail::name_hash;

namespace {

// A name of `n` characters, different at each place.
std::string sample_name(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + (i * 7) % 26));
  return s;
}

// `name`'s characters in a heap block of exactly their size (a std::string has room after them):
// under AddressSanitizer, a read past the name's end is reported.
class exact_copy {
public:
  explicit exact_copy(std::string_view name)
      : size_(name.size()), chars_(std::make_unique<char[]>(name.size())) {
    std::copy(name.begin(), name.end(), chars_.get());
  }
  [[nodiscard]] std::string_view view() const { return {chars_.get(), size_}; }

private:
  std::size_t size_;
  std::unique_ptr<char[]> chars_;
};

// Pearson's statistic for `counts` against an even spread of their sum.
double chi_square(const std::vector<std::size_t>& counts) {
  std::size_t total = 0;
  for (std::size_t c : counts) total += c;
  const double expected = static_cast<double>(total) / static_cast<double>(counts.size());
  double sum = 0;
  for (std::size_t c : counts) {
    const double d = static_cast<double>(c) - expected;
    sum += d * d / expected;
  }
  return sum;
}

} // namespace

TEST_CASE("the name comparison agrees with std::string_view's, for every length and difference") {
  const name_equal equal;
  for (std::size_t n = 0; n <= 40; ++n) {
    const exact_copy name(sample_name(n));
    const exact_copy copy(name.view()); // other storage: compared by content, not by address
    CHECK(equal(name.view(), copy.view()));
    for (std::size_t i = 0; i < n; ++i) {
      std::string changed(name.view());
      changed[i] = static_cast<char>(changed[i] ^ 0x20);
      const exact_copy other(changed);
      CHECK_FALSE(equal(name.view(), other.view()));
      CHECK_FALSE(equal(other.view(), name.view()));
    }
    if (n > 0) {
      CHECK_FALSE(equal(name.view(), name.view().substr(0, n - 1)));
      CHECK_FALSE(equal(name.view().substr(1), name.view()));
    }
  }
}

TEST_CASE("names that differ in one character, or in length only, hash apart") {
  const name_hash hash;
  std::vector<std::size_t> hashes;
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string name = sample_name(n);
    hashes.push_back(hash(exact_copy(name).view()));
    for (std::size_t i = 0; i < n; ++i) {
      std::string other = name;
      other[i] = static_cast<char>(other[i] ^ 0x01);
      hashes.push_back(hash(exact_copy(other).view()));
    }
    if (n > 0) hashes.push_back(hash(std::string(n, '\0'))); // zeros: apart by length alone
  }
  const std::size_t count = hashes.size();
  std::sort(hashes.begin(), hashes.end());
  CHECK(std::unique(hashes.begin(), hashes.end()) - hashes.begin() ==
        static_cast<std::ptrdiff_t>(count));
}

TEST_CASE("a name hashes by its characters, wherever they are stored") {
  const name_hash hash;
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string name = sample_name(n);
    const std::string padded = "##" + name + "##";
    CHECK(hash(name) == hash(std::string_view(padded).substr(2, n)));
  }
}

TEST_CASE("a million names of a server's shapes hash apart and spread evenly") {
  const name_hash hash;
  const auto shape = GENERATE(as<std::string>{}, "t", "conn-", "tenant-42/worker-7/connection-");
  std::vector<std::uint64_t> hashes;
  constexpr std::size_t count = 1000000;
  hashes.reserve(count);
  for (std::size_t i = 0; i < count; ++i)
    hashes.push_back(static_cast<std::uint64_t>(hash(shape + std::to_string(i))));

  // 1,023 degrees of freedom, 255 for the low byte: the bounds are the expected value plus seven
  // standard deviations, which an even spread exceeds with a chance of about one in a billion.
  constexpr unsigned hash_bits = 8 * sizeof(std::size_t);
  std::vector<std::size_t> high(1024);
  std::vector<std::size_t> low(256);
  for (std::uint64_t h : hashes) {
    ++high[static_cast<std::size_t>(h >> (hash_bits - 10))];
    ++low[static_cast<std::size_t>(h & 0xff)];
  }
  INFO("names '" << shape << "N'");
  CHECK(chi_square(high) < 1023 + 7 * 45.2);
  CHECK(chi_square(low) < 255 + 7 * 22.6);

  // Among a million 64-bit hashes a collision has a chance of about 3 in 100 million; among 32-bit
  // ones about 116 are expected, so there only the spread is checked.
  if constexpr (hash_bits == 64) {
    std::sort(hashes.begin(), hashes.end());
    CHECK(std::adjacent_find(hashes.begin(), hashes.end()) == hashes.end());
  }
}

TEST_CASE("the 128-bit product's folded halves, without a 128-bit type, are those with one") {
  std::vector<std::uint64_t> values = {0,           1,          2,         0xffffffff,
                                       0x100000000, ~0ull >> 1, ~0ull - 1, ~0ull};
  std::mt19937_64 random(2024);
  for (int i = 0; i < 1000; ++i) values.push_back(random());
  std::size_t mismatches = 0;
  for (std::uint64_t a : values)
    for (std::uint64_t b : values)
      if (taskyard::detail::fold_multiply_portable(a, b) != taskyard::detail::fold_multiply(a, b))
        ++mismatches;
  CHECK(mismatches == 0);
#if !defined(__SIZEOF_INT128__)
  WARN("no 128-bit integer type: fold_multiply is the portable form, compared with itself");
#endif
}
