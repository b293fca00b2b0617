// Private plan layout shared by the FFT driver (fft.cpp) and the kernels it
// dispatches to; plain data only, so the AVX2 translation unit needs no
// library templates.
#pragma once

#include <cstddef>

namespace heteroagg::detail {

// Transforms run side by side in one vector: a block of this many rows or
// columns goes through every Stockham pass together.
constexpr std::size_t fft_lanes = 8;

// One Stockham pass: radix-`radix` butterflies after `span` points have
// already been combined; `twiddles` holds (span, radix - 1) complex factors
// as interleaved float pairs (unused when span == 1).
struct fft_pass {
  unsigned radix;
  std::size_t span;
  const float* twiddles;
};

constexpr unsigned fft_max_passes = 64;

// The passes of a 1D transform of length n (none when n == 1).
struct fft_axis {
  std::size_t n;
  unsigned n_passes;
  fft_pass passes[fft_max_passes];
};

struct fft2_layout {
  std::size_t ny, nx;
  fft_axis cols;  // length ny, applied to blocks of columns
  fft_axis rows;  // length nx, applied to blocks of rows
};

// Blocks of fft_lanes columns that the column pass reads and writes together.
constexpr std::size_t fft_col_blocks = 4;

// Floats of scratch one call of a kernel needs (before alignment).
constexpr std::size_t fft_scratch_floats(std::size_t ny, std::size_t nx) {
  return 2 * 2 * fft_lanes * (fft_col_blocks * ny > nx ? fft_col_blocks * ny : nx);
}

// Transforms `count` contiguous ny x nx arrays of interleaved complex floats
// in place; `scratch` is 64-byte aligned with fft_scratch_floats(ny, nx).
using fft2_kernel = void (*)(const fft2_layout& layout, float* data, std::size_t count, bool inverse,
                             float* scratch);

void fft2_baseline(const fft2_layout& layout, float* data, std::size_t count, bool inverse, float* scratch);
#if defined(HETEROAGG_HAVE_AVX2_FFT)
void fft2_avx2(const fft2_layout& layout, float* data, std::size_t count, bool inverse, float* scratch);
#endif

}  // namespace heteroagg::detail
