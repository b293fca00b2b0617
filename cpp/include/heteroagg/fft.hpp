// Two-dimensional complex FFTs of complex64 arrays (mixed radix 2, 3, 4, 5, 7, 8).
#pragma once

#include <complex>
#include <cstddef>
#include <memory>

namespace heteroagg {

using complex64 = std::complex<float>;

// True when n > 0 factors into 2, 3, 5 and 7 only.
bool fft_size_ok(std::size_t n);

// Smallest n' >= n with fft_size_ok(n').
std::size_t next_fft_size(std::size_t n);

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

  std::size_t ny() const;
  std::size_t nx() const;

 private:
  struct impl;
  std::unique_ptr<const impl> impl_;
};

}  // namespace heteroagg
