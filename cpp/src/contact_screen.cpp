#include "contact_screen.hpp"

#define HETEROAGG_SCREEN_NAME screen_baseline_impl
#include "contact_screen_kernel.inc"

namespace heteroagg::detail {

#if defined(HETEROAGG_HAVE_AVX2_KERNEL)
screen_progress screen_candidates_avx2(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                      const candidate_runs* runs, flagged_block* out, std::size_t capacity);
#endif

screen_progress screen_candidates_baseline(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                           const candidate_runs* runs, flagged_block* out, std::size_t capacity) {
  return screen_baseline_impl(p, first_point, n, runs, out, capacity);
}

screen_kernel avx2_screen_kernel() {
#if defined(HETEROAGG_HAVE_AVX2_KERNEL)
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported ? &screen_candidates_avx2 : nullptr;
#else
  return nullptr;
#endif
}

screen_progress screen_candidates(const screen_points& p, std::uint32_t first_point, std::size_t n,
                                  const candidate_runs* runs, flagged_block* out, std::size_t capacity) {
  static const screen_kernel kernel = avx2_screen_kernel() ? avx2_screen_kernel() : &screen_candidates_baseline;
  return kernel(p, first_point, n, runs, out, capacity);
}

}  // namespace heteroagg::detail
