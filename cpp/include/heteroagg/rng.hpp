// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Every random draw in heteroagg is a pure function of (key, counter): the
// key is the 64-bit seed of one item, the counter holds a 64-bit stream id and
// a 64-bit block index.  The same code compiles for host and device, so the
// CPU and CUDA paths produce bit-identical integer streams.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HETEROAGG_HD __host__ __device__
#else
#define HETEROAGG_HD
#endif

namespace heteroagg {

struct philox_block {
  std::uint32_t v[4];
};

HETEROAGG_HD inline void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                        std::uint32_t& lo) {
  const std::uint64_t product = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(product >> 32);
  lo = static_cast<std::uint32_t>(product);
}

// One Philox4x32-10 evaluation: 10 rounds with the key bumped between rounds.
HETEROAGG_HD inline philox_block philox4x32_10(philox_block counter, std::uint32_t key0,
                                               std::uint32_t key1) {
  constexpr std::uint32_t multiplier0 = 0xD2511F53u;
  constexpr std::uint32_t multiplier1 = 0xCD9E8D57u;
  constexpr std::uint32_t weyl0 = 0x9E3779B9u;
  constexpr std::uint32_t weyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += weyl0;
      key1 += weyl1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(multiplier0, counter.v[0], hi0, lo0);
    philox_mulhilo(multiplier1, counter.v[2], hi1, lo1);
    counter = philox_block{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
  }
  return counter;
}

// Seed of item `index` under a root seed: one Philox block of (root, index).
HETEROAGG_HD inline std::uint64_t derive_seed(std::uint64_t root_seed, std::uint64_t index) {
  const philox_block out = philox4x32_10(
      philox_block{{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                    0x5EEDu, 0u}},
      static_cast<std::uint32_t>(root_seed), static_cast<std::uint32_t>(root_seed >> 32));
  return (static_cast<std::uint64_t>(out.v[1]) << 32) | out.v[0];
}

// Map 53 random bits to a double in the open interval (0, 1).  The midpoint
// of the top bin, 1 - 2^-54, rounds to 1; it is returned as the largest
// double below 1 instead.
HETEROAGG_HD inline double bits_to_open_unit(std::uint32_t a, std::uint32_t b) {
  const std::uint64_t bits = (static_cast<std::uint64_t>(a >> 5) << 26) | (b >> 6);
  const double u = (static_cast<double>(bits) + 0.5) * (1.0 / 9007199254740992.0);
  return u < 1.0 ? u : 1.0 - 1.0 / 9007199254740992.0;
}

// A sequential view of one (seed, stream) pair.  Block k of the stream is
// philox4x32_10({k_lo, k_hi, stream_lo, stream_hi}, seed), so any position of
// any stream can also be computed directly without walking the stream.
class philox_stream {
 public:
  HETEROAGG_HD philox_stream(std::uint64_t seed, std::uint64_t stream)
      : key0_(static_cast<std::uint32_t>(seed)),
        key1_(static_cast<std::uint32_t>(seed >> 32)),
        stream_(stream) {}

  HETEROAGG_HD std::uint32_t next_u32() {
    if (used_ == 4) {
      block_ = philox4x32_10(
          philox_block{{static_cast<std::uint32_t>(block_index_),
                        static_cast<std::uint32_t>(block_index_ >> 32),
                        static_cast<std::uint32_t>(stream_),
                        static_cast<std::uint32_t>(stream_ >> 32)}},
          key0_, key1_);
      ++block_index_;
      used_ = 0;
    }
    return block_.v[used_++];
  }

  // Uniform double in (0, 1).
  HETEROAGG_HD double uniform() {
    const std::uint32_t a = next_u32();
    const std::uint32_t b = next_u32();
    return bits_to_open_unit(a, b);
  }

  HETEROAGG_HD double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Uniform integer in [0, n) by rejection (no modulo bias); n >= 1.
  HETEROAGG_HD std::uint32_t below(std::uint32_t n) {
    const std::uint32_t limit = static_cast<std::uint32_t>(0x100000000ull % n);
    for (;;) {
      const std::uint32_t x = next_u32();
      if (x >= limit) return x % n;
    }
  }

  // Standard normal draw (Box-Muller, one output per pair of uniforms).
  HETEROAGG_HD double normal() {
    const double u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint32_t key0_;
  std::uint32_t key1_;
  std::uint64_t stream_;
  std::uint64_t block_index_ = 0;
  philox_block block_{{0, 0, 0, 0}};
  int used_ = 4;
};

}  // namespace heteroagg
