// Two-dimensional complex FFTs of complex64 arrays (mixed radix 2, 3, 4, 5, 7, 8).
#pragma once

#include <complex>
#include <cstddef>
#include <memory>
#include <vector>

namespace heteroagg {

using complex64 = std::complex<float>;

// True when n > 0 factors into 2, 3, 5 and 7 only.
bool fft_size_ok(std::size_t n);

// Smallest n' >= n with fft_size_ok(n').
std::size_t next_fft_size(std::size_t n);

// A window onto a periodic row-major gy x gx grid: point (y, x) of the
// window is grid[(oy + y) mod gy][(ox + x) mod gx].
struct periodic_window {
  const complex64* grid;
  std::size_t gy, gx;
  std::ptrdiff_t oy, ox;
};

// Plan for in-place 2D FFTs of a row-major ny x nx complex64 array (x fastest).
// Construction throws std::invalid_argument for sizes that are not fft_size_ok.
// forward: X[ky,kx] = sum x[y,x] exp(-2 pi i (ky y/ny + kx x/nx)), unnormalised (numpy.fft.fft2);
// inverse: the +i transform divided by nx*ny (numpy.fft.ifft2).
// The const methods are thread-safe: many threads may run one plan on different arrays at once.
class fft2_plan {
 public:
  fft2_plan(std::size_t ny, std::size_t nx);
  ~fft2_plan();
  fft2_plan(fft2_plan&&) noexcept;
  fft2_plan& operator=(fft2_plan&&) noexcept;
  fft2_plan(const fft2_plan&) = delete;
  fft2_plan& operator=(const fft2_plan&) = delete;

  void forward(complex64* data) const;
  void inverse(complex64* data) const;
  // batch of `count` contiguous ny*nx arrays
  void forward(complex64* data, std::size_t count) const;
  void inverse(complex64* data, std::size_t count) const;

  // The two halves of a multislice step, each reading and writing the array
  // once.  They work on arrays held with only their rows transformed: with
  // R the forward FFT along x and C along y (so forward() is C R), such an
  // array is R x for the plain array x.
  //
  // rows_pass applies R diag(f) R^-1, where f is `factor`'s window (at
  // least as wide as the plan); with from_real it applies R diag(f) to a
  // plain array instead.
  //
  // columns_pass applies C^-1 diag(p) C, where p is `factor` in column
  // layout.  Between the two it adds sum(w |C data|^2) to sums[d] for each
  // weight w (column layout), over the fully transformed array.  With
  // back = false it stops there and leaves `data` unspecified.
  void rows_pass(complex64* data, const periodic_window& factor, bool from_real) const;
  void columns_pass(complex64* data, const float* factor, const std::vector<const float*>& weights, double* sums,
                    bool back) const;
  // A ny x nx array in the order in which columns_pass visits the points
  // (its size depends on the plan's kernel).
  std::vector<float> column_layout(const complex64* values) const;
  std::vector<float> column_layout(const float* real_values) const;

  std::size_t ny() const;
  std::size_t nx() const;

 private:
  // floats of a column-layout array
  std::size_t column_layout_floats() const;

  struct impl;
  std::unique_ptr<const impl> impl_;
};

}  // namespace heteroagg
