// Single-precision screening of candidate contacts, the inner loop of the
// descriptors' pair search.  Private to the library.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heteroagg::detail {

// Points in structure-of-arrays layout; every array is readable for
// screen_block more entries past the last point.
struct screen_points {
  const float* x;
  const float* y;
  const float* z;
  const float* reach;  // a pair (k, l) is a candidate when d_kl <= reach_k + reach_l
};

constexpr std::uint32_t screen_block = 8;

// A block of candidates [b, b + 8) with at least one hit for point k; bit t
// of `hits` marks candidate b + t.
struct flagged_block {
  std::uint32_t k;
  std::uint32_t b;
  std::uint32_t hits;
};

// The candidates of point k: positions k < l < ahead and next_first <= l < next_last.
struct candidate_runs {
  std::uint32_t ahead, next_first, next_last;
};

// Room a point needs in the output of the screen: the fixed first block of
// each run plus any further blocks.
inline std::size_t screen_capacity(std::size_t k, const candidate_runs& runs) {
  const std::size_t own = runs.ahead > k + 1 ? runs.ahead - k - 1 : 0;
  return 2 + (own + runs.next_last - runs.next_first) / screen_block;
}

// Point arrays must be readable to n + screen_padding: a run's first block
// may start at n.
constexpr std::uint32_t screen_padding = screen_block;

// Where a screen stopped: entries written, and the first point not screened
// (n when all were).
struct screen_progress {
  std::size_t written;
  std::uint32_t next_point;
};

// Screen the points first_point <= k < n against their candidate runs and
// write the blocks with hits to `out`, stopping before a point whose
// screen_capacity() would no longer fit in `capacity` entries, so a caller
// can grow the buffer and resume.  Uses AVX2+FMA when the CPU has them.
screen_progress screen_candidates(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                  const candidate_runs* runs, flagged_block* out, std::size_t capacity);

// The kernels behind screen_candidates, exposed for parity tests: the
// portable one (SSE2 on x86-64), and the AVX2+FMA one, which is null where
// it is not built or the CPU lacks those instructions.
using screen_kernel = screen_progress (*)(const screen_points&, std::uint32_t, std::size_t, const candidate_runs*,
                                          flagged_block*, std::size_t);
screen_progress screen_candidates_baseline(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                           const candidate_runs* runs, flagged_block* out, std::size_t capacity);
screen_kernel avx2_screen_kernel();

}  // namespace heteroagg::detail
