// Plans for the 2D FFT: factorisation, twiddle tables, scratch and the
// choice of kernel (AVX2+FMA where the CPU has it).
#include "heteroagg/fft.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "fft_kernel.hpp"

#define HETEROAGG_FFT_NAME fft2_baseline_kernels
#include "fft_kernel.inc"

namespace heteroagg {

namespace detail {
namespace {

constexpr double pi = 3.14159265358979323846;

// The AVX2 kernel where the CPU has it; HETEROAGG_FFT_KERNEL=portable forces
// the portable one (so tests can check both on one machine).
fft2_kernels select_kernels() {
  const char* forced = std::getenv("HETEROAGG_FFT_KERNEL");
  if (forced != nullptr && std::string(forced) == "portable") return fft2_baseline_kernels();
#if defined(HETEROAGG_HAVE_AVX2_FFT)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fft2_avx2_kernels();
#endif
  return fft2_baseline_kernels();
}

// Radices for a transform of length n, largest first: 7, 5, 3, then powers of two as 8s and 4s.
std::vector<unsigned> factorize(std::size_t n) {
  std::vector<unsigned> radices;
  for (unsigned r : {7u, 5u, 3u})
    while (n % r == 0) {
      radices.push_back(r);
      n /= r;
    }
  unsigned twos = 0;
  while (n % 2 == 0) {
    ++twos;
    n /= 2;
  }
  while (twos >= 3 && twos != 4) {
    radices.push_back(8);
    twos -= 3;
  }
  while (twos >= 2) {
    radices.push_back(4);
    twos -= 2;
  }
  if (twos == 1) radices.push_back(2);
  return radices;
}

}  // namespace
}  // namespace detail

bool fft_size_ok(std::size_t n) {
  if (n == 0) return false;
  for (std::size_t r : {2, 3, 5, 7})
    while (n % r == 0) n /= r;
  return n == 1;
}

std::size_t next_fft_size(std::size_t n) {
  if (n <= 1) return 1;
  // The smallest 2^a 3^b 5^c 7^d >= n: for each product of powers of 3, 5 and 7 not above
  // n, the smallest power of two that lifts it to n.  Counting up instead takes ~1e7 steps
  // between 7-smooth sizes near 1e10, and far more above.
  constexpr std::size_t top = std::numeric_limits<std::size_t>::max();
  std::size_t best = 0;  // 0: none fits
  for (std::size_t p7 = 1;; p7 *= 7) {
    for (std::size_t p5 = p7;; p5 *= 5) {
      for (std::size_t p3 = p5;; p3 *= 3) {
        std::size_t m = p3;
        while (m < n && m <= top / 2) m *= 2;
        if (m >= n && (best == 0 || m < best)) best = m;
        if (p3 >= n || p3 > top / 3) break;
      }
      if (p5 >= n || p5 > top / 5) break;
    }
    if (p7 >= n || p7 > top / 7) break;
  }
  if (best == 0) throw std::overflow_error("next_fft_size: no 7-smooth size fits in std::size_t");
  return best;
}

struct fft2_plan::impl {
  detail::fft2_layout layout{};
  std::vector<float> twiddles;
  detail::fft2_kernels kernels{};

  impl(std::size_t ny, std::size_t nx) {
    if (!fft_size_ok(ny) || !fft_size_ok(nx))
      throw std::invalid_argument("fft2_plan: sizes must be positive products of 2, 3, 5 and 7, got " +
                                  std::to_string(ny) + " x " + std::to_string(nx));
    layout.ny = ny;
    layout.nx = nx;
    // Offsets first: the table must not move once passes point into it.
    std::vector<std::size_t> offsets;
    build_axis(layout.cols, ny, offsets);
    build_axis(layout.rows, nx, offsets);
    std::size_t q = 0;
    for (detail::fft_axis* axis : {&layout.cols, &layout.rows})
      for (unsigned p = 0; p < axis->n_passes; ++p) axis->passes[p].twiddles = twiddles.data() + offsets[q++];
    kernels = detail::select_kernels();
  }

  // Fills the passes of one axis and appends their twiddles (computed in
  // double from exact integer angles) to the table.
  void build_axis(detail::fft_axis& axis, std::size_t n, std::vector<std::size_t>& offsets) {
    axis.n = n;
    axis.n_passes = 0;
    std::size_t span = 1;
    for (unsigned r : detail::factorize(n)) {
      offsets.push_back(twiddles.size());
      const std::size_t period = span * r;
      for (std::size_t k = 0; k < (span > 1 ? span : 0); ++k)
        for (std::size_t t = 1; t < r; ++t) {
          const double angle = -2.0 * detail::pi * static_cast<double>((t * k) % period) / static_cast<double>(period);
          twiddles.push_back(static_cast<float>(std::cos(angle)));
          twiddles.push_back(static_cast<float>(std::sin(angle)));
        }
      axis.passes[axis.n_passes++] = detail::fft_pass{r, span, nullptr};
      span = period;
    }
  }

  // Per-thread scratch, 64-byte aligned, so one plan can serve many threads at once.
  float* scratch() const {
    thread_local std::vector<float> buffer;
    const std::size_t need = detail::fft_any_scratch_floats(layout.ny, layout.nx) + 16;
    if (buffer.size() < need) buffer.assign(need, 0.0f);
    const auto misalign = reinterpret_cast<std::uintptr_t>(buffer.data()) % 64;
    return buffer.data() + (misalign ? (64 - misalign) / sizeof(float) : 0);
  }

  void run(complex64* data, std::size_t count, bool inverse) const {
    kernels.transform(layout, reinterpret_cast<float*>(data), count, inverse, scratch());
  }
};

fft2_plan::fft2_plan(std::size_t ny, std::size_t nx) : impl_(std::make_unique<const impl>(ny, nx)) {}
fft2_plan::~fft2_plan() = default;
fft2_plan::fft2_plan(fft2_plan&&) noexcept = default;
fft2_plan& fft2_plan::operator=(fft2_plan&&) noexcept = default;

void fft2_plan::forward(complex64* data) const { impl_->run(data, 1, false); }
void fft2_plan::inverse(complex64* data) const { impl_->run(data, 1, true); }
void fft2_plan::forward(complex64* data, std::size_t count) const { impl_->run(data, count, false); }
void fft2_plan::inverse(complex64* data, std::size_t count) const { impl_->run(data, count, true); }

void fft2_plan::rows_pass(complex64* data, const periodic_window& factor, bool from_real) const {
  if (factor.gy == 0 || factor.gx < nx())
    throw std::invalid_argument("fft2_plan::rows_pass: the window is wider than its grid");
  auto wrap = [](std::ptrdiff_t i, std::size_t n) {
    const auto m = static_cast<std::ptrdiff_t>(n);
    return static_cast<std::size_t>(((i % m) + m) % m);
  };
  const detail::fft_window window{reinterpret_cast<const float*>(factor.grid), factor.gy, factor.gx,
                                  wrap(factor.oy, factor.gy), wrap(factor.ox, factor.gx)};
  impl_->kernels.rows(impl_->layout, reinterpret_cast<float*>(data), window, from_real, impl_->scratch());
}

void fft2_plan::columns_pass(complex64* data, const float* factor, const std::vector<const float*>& weights,
                             double* sums, bool back) const {
  impl_->kernels.columns(impl_->layout, reinterpret_cast<float*>(data), factor, weights.data(), weights.size(), sums,
                         back, impl_->scratch());
}

std::vector<float> fft2_plan::column_layout(const complex64* values) const {
  std::vector<float> out(column_layout_floats());
  impl_->kernels.column_layout(impl_->layout, reinterpret_cast<const float*>(values), out.data());
  return out;
}

std::vector<float> fft2_plan::column_layout(const float* values) const {
  std::vector<complex64> complex(values, values + ny() * nx());
  return column_layout(complex.data());
}

std::size_t fft2_plan::column_layout_floats() const {
  return 2 * detail::fft_lanes * ny() * ((nx() + detail::fft_lanes - 1) / detail::fft_lanes);
}

std::size_t fft2_plan::ny() const { return impl_->layout.ny; }
std::size_t fft2_plan::nx() const { return impl_->layout.nx; }

}  // namespace heteroagg
