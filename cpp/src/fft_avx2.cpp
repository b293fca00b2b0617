// The AVX2+FMA build of the FFT kernel; this file alone is compiled with
// -mavx2 -mfma and is only called after a run-time check of the CPU.
#include "fft_kernel.hpp"

#define HETEROAGG_FFT_NAME fft2_avx2_impl
#include "fft_kernel.inc"

namespace heteroagg::detail {

void fft2_avx2(const fft2_layout& layout, float* data, std::size_t count, bool inverse, float* scratch) {
  fft2_avx2_impl(layout, data, count, inverse, scratch);
}

}  // namespace heteroagg::detail
