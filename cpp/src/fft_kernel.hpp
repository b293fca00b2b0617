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

// A window of a periodic grid of interleaved complex floats: point (y, x) of
// the window is grid[(oy + y) mod gy][(ox + x) mod gx], with oy < gy, ox < gx
// and a window no larger than the grid.
struct fft_window {
  const float* grid;
  std::size_t gy, gx, oy, ox;
};

// Floats of scratch one call of any kernel below needs (before alignment).
constexpr std::size_t fft_any_scratch_floats(std::size_t ny, std::size_t nx) {
  return fft_scratch_floats(ny, nx) > 3 * 2 * fft_lanes * nx ? fft_scratch_floats(ny, nx) : 3 * 2 * fft_lanes * nx;
}

// The kernels of one instruction set.  `scratch` is always 64-byte aligned
// with fft_any_scratch_floats(ny, nx) floats; arrays are interleaved complex.
struct fft2_kernels {
  // Transforms `count` contiguous ny x nx arrays in place.
  void (*transform)(const fft2_layout& layout, float* data, std::size_t count, bool inverse, float* scratch);
  // Per row: inverse FFT along x (skipped when from_real), multiply by the
  // window's row, forward FFT along x.
  void (*rows)(const fft2_layout& layout, float* data, const fft_window& factor, bool from_real, float* scratch);
  // Per column: forward FFT along y, multiply by `factor` (in column layout),
  // add sum(weight * |value|^2) to sums[d] for each of the n_weights weights
  // (column layout), then, when `back`, the inverse FFT along y.
  void (*columns)(const fft2_layout& layout, float* data, const float* factor, const float* const* weights,
                  std::size_t n_weights, double* sums, bool back, float* scratch);
  // Copies a ny x nx array into column layout: the order in which `columns`
  // holds the points of blocks of fft_lanes columns, ny * ceil(nx / fft_lanes)
  // elements of 2 * fft_lanes floats.
  void (*column_layout)(const fft2_layout& layout, const float* values, float* out);
};

fft2_kernels fft2_baseline_kernels();
#if defined(HETEROAGG_HAVE_AVX2_FFT)
fft2_kernels fft2_avx2_kernels();
#endif

}  // namespace heteroagg::detail
