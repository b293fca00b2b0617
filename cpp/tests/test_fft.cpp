// Plain C++ tests of the 2D FFT against a brute-force DFT (no Python involved).
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "check.hpp"
#include "heteroagg/fft.hpp"

namespace {

using heteroagg::complex64;
using cd = std::complex<double>;

using heteroagg_test::check;

std::vector<complex64> random_array(std::size_t n, unsigned seed) {
  std::vector<complex64> a(n);
  unsigned s = seed * 2654435761u + 1u;
  const auto next = [&s] {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>(s >> 8) / 16777216.0f - 0.5f;
  };
  for (auto& v : a) {
    const float re = next();
    v = complex64(re, next());
  }
  return a;
}

// O(n^2) DFT along each axis in double: sign -1 forward, +1 inverse (then / (ny nx)).
std::vector<cd> brute_dft2(const std::vector<complex64>& a, std::size_t ny, std::size_t nx, int sign) {
  const double two_pi = 6.283185307179586476925;
  std::vector<cd> x(a.begin(), a.end()), t(ny * nx);
  for (std::size_t y = 0; y < ny; ++y)
    for (std::size_t k = 0; k < nx; ++k) {
      cd sum = 0.0;
      for (std::size_t j = 0; j < nx; ++j)
        sum += x[y * nx + j] * std::polar(1.0, sign * two_pi * static_cast<double>((j * k) % nx) / nx);
      t[y * nx + k] = sum;
    }
  for (std::size_t k = 0; k < ny; ++k)
    for (std::size_t c = 0; c < nx; ++c) {
      cd sum = 0.0;
      for (std::size_t j = 0; j < ny; ++j)
        sum += t[j * nx + c] * std::polar(1.0, sign * two_pi * static_cast<double>((j * k) % ny) / ny);
      x[k * nx + c] = sign > 0 ? sum / static_cast<double>(ny * nx) : sum;
    }
  return x;
}

double rel_rms(const std::vector<complex64>& got, const std::vector<cd>& want) {
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    err += std::norm(cd(got[i]) - want[i]);
    norm += std::norm(want[i]);
  }
  return norm > 0.0 ? std::sqrt(err / norm) : std::sqrt(err);
}

bool bitwise_equal(const std::vector<complex64>& a, const std::vector<complex64>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

std::string size_name(std::size_t ny, std::size_t nx) { return std::to_string(ny) + "x" + std::to_string(nx); }

// Sizes that use every radix (2, 3, 4, 5, 7, 8), partial lane blocks and degenerate axes.
const std::pair<std::size_t, std::size_t> sizes[] = {
    {1, 1},  {1, 8},  {8, 1},   {7, 49},  {2, 3},  {4, 5},   {6, 10},   {14, 9},  {8, 8},  {16, 32},
    {64, 7}, {25, 27}, {12, 120}, {49, 16}, {9, 343}, {125, 2}, {30, 28}, {1, 512}, {210, 1}, {16, 45}};

void test_against_brute_force() {
  double worst = 0.0;
  for (const auto& [ny, nx] : sizes) {
    const heteroagg::fft2_plan plan(ny, nx);
    check(plan.ny() == ny && plan.nx() == nx, "plan sizes " + size_name(ny, nx));
    const auto input = random_array(ny * nx, static_cast<unsigned>(ny * 131 + nx));
    auto a = input;
    plan.forward(a.data());
    const double e_fwd = rel_rms(a, brute_dft2(input, ny, nx, -1));
    check(e_fwd < 1e-6, "forward " + size_name(ny, nx) + " rel rms " + std::to_string(e_fwd));
    a = input;
    plan.inverse(a.data());
    const double e_inv = rel_rms(a, brute_dft2(input, ny, nx, +1));
    check(e_inv < 1e-6, "inverse " + size_name(ny, nx) + " rel rms " + std::to_string(e_inv));
    plan.forward(a.data());
    const double e_round = rel_rms(a, std::vector<cd>(input.begin(), input.end()));
    check(e_round < 1e-6, "round trip " + size_name(ny, nx) + " rel rms " + std::to_string(e_round));
    worst = std::max({worst, e_fwd, e_inv, e_round});
  }
  std::printf("  worst relative rms error vs brute-force DFT: %.2e\n", worst);
}

void test_batch_equals_single() {
  for (const auto& [ny, nx] : {std::pair<std::size_t, std::size_t>{7, 49}, {64, 64}, {30, 8}}) {
    const heteroagg::fft2_plan plan(ny, nx);
    const std::size_t count = 4, n = ny * nx;
    auto batch = random_array(count * n, 7);
    auto single = batch;
    plan.forward(batch.data(), count);
    for (std::size_t c = 0; c < count; ++c) plan.forward(single.data() + c * n);
    check(bitwise_equal(batch, single), "forward batch equals per-array " + size_name(ny, nx));
    plan.inverse(batch.data(), count);
    for (std::size_t c = 0; c < count; ++c) plan.inverse(single.data() + c * n);
    check(bitwise_equal(batch, single), "inverse batch equals per-array " + size_name(ny, nx));
  }
}

void test_invalid_sizes() {
  for (const auto& [ny, nx] : {std::pair<std::size_t, std::size_t>{0, 4}, {4, 0}, {11, 4}, {4, 13}, {22, 8}}) {
    bool threw = false;
    try {
      const heteroagg::fft2_plan plan(ny, nx);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, "invalid size throws " + size_name(ny, nx));
  }
}

void test_sizes() {
  const auto smooth = [](std::size_t n) {
    for (std::size_t p = 2; p <= n; ++p)
      while (n % p == 0) {
        if (p > 7) return false;
        n /= p;
      }
    return true;
  };
  check(!heteroagg::fft_size_ok(0), "0 is not an FFT size");
  check(heteroagg::next_fft_size(0) == 1, "next_fft_size(0) == 1");
  for (std::size_t n = 1; n <= 5000; ++n) {
    check(heteroagg::fft_size_ok(n) == smooth(n), "fft_size_ok(" + std::to_string(n) + ")");
    std::size_t want = n;
    while (!smooth(want)) ++want;
    check(heteroagg::next_fft_size(n) == want, "next_fft_size(" + std::to_string(n) + ")");
  }
  // large sizes at once: 2^40 is its own, and near the top of size_t the next is found or refused
  check(heteroagg::next_fft_size(std::size_t{1} << 40) == std::size_t{1} << 40, "next_fft_size(2^40)");
  check(heteroagg::next_fft_size((std::size_t{1} << 40) + 1) == 1100753141760ULL,
        "next_fft_size(2^40 + 1)");
  bool refused = false;
  try {
    heteroagg::next_fft_size(std::numeric_limits<std::size_t>::max() - 1);
  } catch (const std::overflow_error&) {
    refused = true;
  }
  check(refused, "no 7-smooth size near the top of size_t");
}

// One plan run from several threads at once must give the single-thread result.
void test_threads() {
  const std::size_t ny = 120, nx = 96, n = ny * nx, n_threads = 4, rounds = 20;
  const heteroagg::fft2_plan plan(ny, nx);
  std::vector<std::vector<complex64>> inputs, expected;
  for (std::size_t t = 0; t < n_threads; ++t) {
    inputs.push_back(random_array(n, static_cast<unsigned>(100 + t)));
    auto e = inputs.back();
    plan.forward(e.data());
    expected.push_back(std::move(e));
  }
  std::vector<int> ok(n_threads, 1);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < n_threads; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t r = 0; r < rounds; ++r) {
        auto a = inputs[t];
        plan.forward(a.data());
        if (!bitwise_equal(a, expected[t])) ok[t] = 0;
        plan.inverse(a.data());
      }
    });
  for (auto& th : threads) th.join();
  for (std::size_t t = 0; t < n_threads; ++t) check(ok[t] == 1, "thread " + std::to_string(t) + " result");
}

void test_move() {
  heteroagg::fft2_plan a(8, 12);
  heteroagg::fft2_plan b(std::move(a));
  check(b.ny() == 8 && b.nx() == 12, "moved plan keeps its sizes");
  heteroagg::fft2_plan c(3, 5);
  c = std::move(b);
  auto x = random_array(96, 3);
  const auto input = x;
  c.forward(x.data());
  check(rel_rms(x, brute_dft2(input, 8, 12, -1)) < 1e-6, "move-assigned plan transforms");
}

// O(n^2) DFT of a ny x nx array along x (axis 1) or y (axis 0), in double, unnormalised.
std::vector<cd> brute_dft_axis(const std::vector<cd>& a, std::size_t ny, std::size_t nx, int axis, int sign) {
  const double two_pi = 6.283185307179586476925;
  const std::size_t n = axis == 1 ? nx : ny, lines = axis == 1 ? ny : nx;
  const std::size_t step = axis == 1 ? 1 : nx, line_step = axis == 1 ? nx : 1;
  std::vector<cd> out(a.size());
  for (std::size_t l = 0; l < lines; ++l)
    for (std::size_t k = 0; k < n; ++k) {
      cd sum = 0.0;
      for (std::size_t j = 0; j < n; ++j)
        sum += a[l * line_step + j * step] * std::polar(1.0, sign * two_pi * static_cast<double>((j * k) % n) / n);
      out[l * line_step + k * step] = sum;
    }
  return out;
}

std::vector<float> random_weights(std::size_t n, unsigned seed) {
  std::vector<float> w;
  for (const complex64& v : random_array(n, seed)) w.push_back(v.real() + 0.5f);
  return w;
}

// One multislice step in double: returns ifft2(p * fft2(window * x)) and adds sum(w |p * fft2(window * x)|^2).
std::vector<cd> brute_step(const std::vector<cd>& x, const std::vector<complex64>& grid, std::size_t gy,
                           std::size_t gx, std::ptrdiff_t oy, std::ptrdiff_t ox, const std::vector<complex64>& p,
                           const std::vector<float>& w, std::size_t ny, std::size_t nx, double& sum) {
  const auto wrap = [](std::ptrdiff_t i, std::size_t n) {
    return static_cast<std::size_t>(((i % static_cast<std::ptrdiff_t>(n)) + static_cast<std::ptrdiff_t>(n)) %
                                    static_cast<std::ptrdiff_t>(n));
  };
  std::vector<cd> u(ny * nx);
  for (std::size_t y = 0; y < ny; ++y)
    for (std::size_t c = 0; c < nx; ++c)
      u[y * nx + c] = x[y * nx + c] * cd(grid[wrap(oy + static_cast<std::ptrdiff_t>(y), gy) * gx +
                                              wrap(ox + static_cast<std::ptrdiff_t>(c), gx)]);
  u = brute_dft_axis(brute_dft_axis(u, ny, nx, 1, -1), ny, nx, 0, -1);
  for (std::size_t i = 0; i < u.size(); ++i) {
    u[i] *= cd(p[i]);
    sum += w[i] * std::norm(u[i]);
  }
  u = brute_dft_axis(brute_dft_axis(u, ny, nx, 0, +1), ny, nx, 1, +1);
  for (cd& v : u) v /= static_cast<double>(ny * nx);
  return u;
}

// Two steps through rows_pass and columns_pass against the brute-force step,
// with windows that wrap around their grids and lane blocks left partial.
void test_multislice_passes() {
  const std::pair<std::size_t, std::size_t> pass_sizes[] = {{8, 8}, {75, 98}, {14, 9}, {64, 40}, {1, 8}, {30, 28}};
  for (const auto& [ny, nx] : pass_sizes) {
    const heteroagg::fft2_plan plan(ny, nx);
    const std::size_t n = ny * nx;
    for (const auto& [gy, gx] : {std::pair<std::size_t, std::size_t>{ny, nx}, {ny + 5, nx + 3}}) {
      const std::string name = size_name(ny, nx) + " in " + size_name(gy, gx);
      const auto grid = random_array(gy * gx, 11), x = random_array(n, 12), p = random_array(n, 13);
      const auto w = random_weights(n, 14);
      const std::ptrdiff_t origins[2][2] = {{-3, 7}, {static_cast<std::ptrdiff_t>(gy) - 2, -1}};
      double want[2] = {0.0, 0.0};
      const auto y1 = brute_step(std::vector<cd>(x.begin(), x.end()), grid, gy, gx, origins[0][0], origins[0][1], p,
                                 w, ny, nx, want[0]);
      brute_step(y1, grid, gy, gx, origins[1][0], origins[1][1], p, w, ny, nx, want[1]);

      const auto p_layout = plan.column_layout(p.data()), w_layout = plan.column_layout(w.data());
      const std::vector<const float*> weights{w_layout.data()};
      auto z = x;
      double got[2] = {0.0, 0.0};
      plan.rows_pass(z.data(), {grid.data(), gy, gx, origins[0][0], origins[0][1]}, true);
      plan.columns_pass(z.data(), p_layout.data(), weights, &got[0], true);
      const double e_step = rel_rms(z, brute_dft_axis(y1, ny, nx, 1, -1));
      check(e_step < 1e-5, "one step " + name + " rel rms " + std::to_string(e_step));
      plan.rows_pass(z.data(), {grid.data(), gy, gx, origins[1][0], origins[1][1]}, false);
      plan.columns_pass(z.data(), p_layout.data(), weights, &got[1], false);
      for (int k = 0; k < 2; ++k)
        check(std::abs(got[k] - want[k]) < 1e-5 * want[k],
              "detector sum of step " + std::to_string(k + 1) + " " + name + ": " + std::to_string(got[k]) +
                  " vs " + std::to_string(want[k]));
    }
  }
  bool threw = false;
  try {
    const heteroagg::fft2_plan plan(8, 16);
    std::vector<complex64> data(128), grid(8 * 12);
    plan.rows_pass(data.data(), {grid.data(), 8, 12, 0, 0}, true);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "rows_pass rejects a window wider than its grid");
}

void run_all(const char* kernel) {
  std::printf("kernel: %s\n", kernel);
  test_against_brute_force();
  test_batch_equals_single();
  test_threads();
  test_multislice_passes();
}

}  // namespace

int main() {
  test_invalid_sizes();
  test_sizes();
  test_move();
  run_all("default");
  // Plans built from here on use the portable kernel.
#if defined(_WIN32)
  _putenv_s("HETEROAGG_FFT_KERNEL", "portable");
#else
  setenv("HETEROAGG_FFT_KERNEL", "portable", 1);
#endif
  run_all("portable");
  return heteroagg_test::finish("FFT");
}
