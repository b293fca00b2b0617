// The AVX2+FMA build of the screening kernel; this file alone is compiled
// with -mavx2 -mfma and is only called after a run-time check of the CPU.
#include "contact_screen.hpp"

#define HETEROAGG_SCREEN_NAME screen_avx2_impl
#include "contact_screen_kernel.inc"

namespace heteroagg::detail {

screen_progress screen_candidates_avx2(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                      const candidate_runs* runs, flagged_block* out, std::size_t capacity) {
  return screen_avx2_impl(p, first_point, n, runs, out, capacity);
}

}  // namespace heteroagg::detail
