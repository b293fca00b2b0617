// Tests of the LUT renderer against brute-force references.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <utility>
#include <vector>

#include "check.hpp"
#include "heteroagg/render.hpp"

using heteroagg_test::check;
using namespace heteroagg;

namespace {

// I(t) = 1 - exp(-r t) with a small spread: D is exactly linear.
thickness_table linear_table(double r, double max_nm, std::size_t n) {
  thickness_table t;
  t.step_nm = max_nm / static_cast<double>(n - 1);
  for (std::size_t k = 0; k < n; ++k) {
    const double thickness = t.step_nm * static_cast<double>(k);
    t.density.push_back(r * thickness);
    t.spread.push_back(0.1 * -std::expm1(-r * thickness));
  }
  return t;
}

render_settings basic_settings(std::size_t ny, std::size_t nx, double pixel) {
  render_settings s;
  s.ny = ny;
  s.nx = nx;
  s.pixel_nm = pixel;
  s.tables = {linear_table(0.01, 60.0, 601), linear_table(0.05, 60.0, 601)};
  return s;
}

// Path lengths per material along the ray at (x, y): each point belongs to the
// lowest-indexed sphere that holds it, found on every piece between endpoints.
std::vector<double> brute_force_paths(const std::vector<double>& c, const std::vector<double>& r,
                                      const std::vector<std::uint8_t>& mat, double x, double y) {
  std::vector<double> edges;
  const std::size_t n = r.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double d2 = (x - c[3 * i]) * (x - c[3 * i]) + (y - c[3 * i + 1]) * (y - c[3 * i + 1]);
    if (d2 < r[i] * r[i]) {
      const double h = std::sqrt(r[i] * r[i] - d2);
      edges.push_back(c[3 * i + 2] - h);
      edges.push_back(c[3 * i + 2] + h);
    }
  }
  std::sort(edges.begin(), edges.end());
  std::vector<double> paths(2, 0.0);
  for (std::size_t k = 0; k + 1 < edges.size(); ++k) {
    const double z = 0.5 * (edges[k] + edges[k + 1]);
    for (std::size_t i = 0; i < n; ++i) {
      const double dx = x - c[3 * i], dy = y - c[3 * i + 1], dz = z - c[3 * i + 2];
      if (dx * dx + dy * dy + dz * dz < r[i] * r[i]) {
        paths[mat[i]] += edges[k + 1] - edges[k];
        break;
      }
    }
  }
  return paths;
}

void test_single_sphere_centre() {
  render_settings s = basic_settings(21, 21, 0.25);
  const std::vector<double> centre{0.0, 0.0, 0.0}, radius{2.0};
  for (std::uint8_t m : {0, 1}) {
    const std::vector<std::uint8_t> material{m};
    render_input in{centre.data(), radius.data(), material.data(), 1, true, mat3{}, true, 0.0, 0.0, 0};
    std::vector<float> image(21 * 21);
    render_output out;
    out.image = image.data();
    render_haadf(in, s, out);
    const double expected = s.tables[m].intensity_at(4.0);
    check(std::fabs(image[10 * 21 + 10] - expected) < 1e-6 * expected, "sphere centre renders LUT(d)");
    check(image[0] == 0.0f, "vacuum is zero");
    check(!out.clipped, "a sphere inside the field is not clipped");
  }
}

void test_paths_match_brute_force() {
  philox_stream rng(7, 0);
  std::vector<double> c, r;
  std::vector<std::uint8_t> mat;
  for (int i = 0; i < 14; ++i) {  // a crowded cluster with many overlaps
    for (int a = 0; a < 3; ++a) c.push_back(rng.uniform(-3.0, 3.0));
    r.push_back(rng.uniform(0.8, 2.0));
    mat.push_back(static_cast<std::uint8_t>(rng.below(2)));
  }
  render_settings s = basic_settings(48, 40, 0.23);
  render_input in{c.data(), r.data(), mat.data(), r.size(), true, mat3{}, true, 0.1, -0.2, 3};
  std::vector<float> image(48 * 40), thickness(2 * 48 * 40);
  std::vector<std::int32_t> particle(48 * 40);
  render_output out;
  out.image = image.data();
  out.thickness = thickness.data();
  out.particle = particle.data();
  render_haadf(in, s, out);
  double worst = 0.0;
  for (std::size_t i = 0; i < 48; ++i)
    for (std::size_t j = 0; j < 40; ++j) {
      const double x = 0.1 + (static_cast<double>(j) - 19.5) * 0.23;
      const double y = -0.2 + (static_cast<double>(i) - 23.5) * 0.23;
      const auto ref = brute_force_paths(c, r, mat, x, y);
      for (std::size_t m = 0; m < 2; ++m)
        worst = std::max(worst, std::fabs(thickness[m * 48 * 40 + i * 40 + j] - ref[m]));
      check((particle[i * 40 + j] < 0) == (ref[0] + ref[1] == 0.0), "owner only where matter is");
    }
  check(worst < 2e-5, "union path lengths match brute force");
  check(out.clipped, "a cluster larger than the field is clipped");
}

void test_rotation_is_applied() {
  // Two touching spheres along x, turned 90 degrees about z, lie along y.
  const std::vector<double> c{-1.0, 0.0, 0.0, 1.0, 0.0, 0.0}, r{1.0, 1.0};
  const std::vector<std::uint8_t> mat{0, 1};
  mat3 rot;
  rot.m = {0, -1, 0, 1, 0, 0, 0, 0, 1};
  render_settings s = basic_settings(9, 9, 0.5);
  render_input in{c.data(), r.data(), mat.data(), 2, true, rot, true, 0.0, 0.0, 0};
  std::vector<float> image(81), thickness(2 * 81);
  render_output out;
  out.image = image.data();
  out.thickness = thickness.data();
  render_haadf(in, s, out);
  check(std::fabs(thickness[2 * 9 + 4] - 2.0) < 1e-6, "TiO2 sphere moved to -y");
  check(std::fabs(thickness[81 + 6 * 9 + 4] - 2.0) < 1e-6, "WO3 sphere moved to +y");
}

void test_poisson_moments() {
  for (double mean : {0.7, 6.0, 35.0, 2.5e4}) {
    philox_stream rng(11, static_cast<std::uint64_t>(mean * 10));
    const int n = 200000;
    double sum = 0, sum2 = 0;
    for (int k = 0; k < n; ++k) {
      const double v = static_cast<double>(poisson(rng, mean));
      sum += v;
      sum2 += v * v;
    }
    const double m = sum / n, var = sum2 / n - m * m;
    check(std::fabs(m - mean) < 5.0 * std::sqrt(mean / n), "Poisson mean");
    check(std::fabs(var - mean) < 5.0 * mean * std::sqrt(2.0 / n) + 1e-9, "Poisson variance");
  }
  // P(0) of a small mean, an exact law.
  philox_stream rng(3, 3);
  int zeros = 0;
  for (int k = 0; k < 100000; ++k) zeros += poisson(rng, 1.3) == 0;
  const double p0 = std::exp(-1.3);
  check(std::fabs(zeros / 1e5 - p0) < 5 * std::sqrt(p0 * (1 - p0) / 1e5), "Poisson P(0)");
}

// The random draws a pixel reaches directly are those of the sequential
// stream, and per-pixel streams never meet whole-image ones.
void test_direct_draws_match_the_sequential_stream() {
  philox_stream rng(21, render_stream_read);
  for (std::uint64_t k = 0; k < 1000; ++k)
    check(normal_at(21, render_stream_read, k) == rng.normal(), "normal_at(k) is the k-th normal");
  check(pixel_stream(render_stream_shot, 0) != render_stream_shot, "pixel streams differ from image streams");
  check(pixel_stream(render_stream_shot, 7) != pixel_stream(render_stream_read, 7), "pixel streams by kind");
  check(pixel_stream(render_stream_shot, 7) != pixel_stream(render_stream_shot, 8), "pixel streams by pixel");
  check(pixel_stream(render_stream_shot, 7) >= 256, "pixel streams stay clear of ids below 256");
}

void test_convolution_brute_force() {
  philox_stream rng(5, 5);
  const std::size_t ny = 13, nx = 17, ry = 2, rx = 3;
  std::vector<float> image(ny * nx), kernel((2 * ry + 1) * (2 * rx + 1)), out(ny * nx);
  for (auto& v : image) v = static_cast<float>(rng.uniform());
  for (auto& v : kernel) v = static_cast<float>(rng.uniform());
  convolve_replicate(image.data(), ny, nx, kernel.data(), ry, rx, out.data());
  double worst = 0;
  for (std::size_t i = 0; i < ny; ++i)
    for (std::size_t j = 0; j < nx; ++j) {
      double ref = 0;
      for (std::size_t a = 0; a <= 2 * ry; ++a)
        for (std::size_t b = 0; b <= 2 * rx; ++b) {
          const long y = std::clamp(static_cast<long>(i + a) - static_cast<long>(ry), 0L, static_cast<long>(ny - 1));
          const long x = std::clamp(static_cast<long>(j + b) - static_cast<long>(rx), 0L, static_cast<long>(nx - 1));
          ref += kernel[a * (2 * rx + 1) + b] * image[static_cast<std::size_t>(y) * nx + static_cast<std::size_t>(x)];
        }
      worst = std::max(worst, std::fabs(ref - out[i * nx + j]));
    }
  check(worst < 1e-5, "convolution matches brute force with replicated edges");
}

void test_batch_and_errors() {
  const std::vector<double> c{0.0, 0.0, 0.0, 2.0, 0.5, 0.3}, r{1.5, 1.0};
  const std::vector<std::uint8_t> mat{0, 1};
  render_settings s = basic_settings(32, 32, 0.2);
  s.orientation_spread = true;
  s.dose = 50.0;
  s.scan_jitter_px = 0.5;
  s.kernel = {0.05f, 0.1f, 0.05f, 0.1f, 0.4f, 0.1f, 0.05f, 0.1f, 0.05f};
  s.kernel_ry = s.kernel_rx = 1;
  std::vector<render_input> inputs;
  for (std::uint64_t seed = 0; seed < 6; ++seed)
    inputs.push_back({c.data(), r.data(), mat.data(), 2, false, mat3{}, false, 0, 0, seed});
  std::vector<std::vector<float>> batch(6, std::vector<float>(32 * 32));
  std::vector<render_output> outputs(6);
  for (std::size_t i = 0; i < 6; ++i) outputs[i].image = batch[i].data();
  render_haadf_batch(inputs, s, outputs, 3);
  for (std::size_t i = 0; i < 6; ++i) {
    std::vector<float> single(32 * 32);
    render_output out;
    out.image = single.data();
    render_haadf(inputs[i], s, out);
    check(single == batch[i], "batch item equals the single render (pure in the seed)");
  }
  check(batch[0] != batch[1], "different seeds differ");

  s.tables[1] = linear_table(0.05, 1.0, 11);  // WO3 table ends at 1 nm
  render_output out;
  std::vector<float> image(32 * 32);
  out.image = image.data();
  bool threw = false;
  try {
    render_haadf(inputs[0], s, out);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "paths longer than the table throw");
  s.extrapolate = true;
  render_haadf(inputs[0], s, out);
  check(std::all_of(image.begin(), image.end(), [](float v) { return std::isfinite(v); }),
        "extrapolation renders");

  // settings that would turn every pixel into NaN are refused
  const std::vector<void (*)(render_settings&)> spoilers{
      [](render_settings& t) { t.gain = std::nan(""); },
      [](render_settings& t) { t.black_level = std::nan(""); },
      [](render_settings& t) { t.kernel[4] = std::nanf(""); },
      [](render_settings& t) { t.read_noise = std::nan(""); },
      [](render_settings& t) { t.scan_jitter_px = HUGE_VAL; },
      [](render_settings& t) { t.tables[0].density[3] = std::nan(""); },
      [](render_settings& t) { t.tables[1].step_nm = HUGE_VAL; },
      [](render_settings& t) { t.support_nm = HUGE_VAL; },
      [](render_settings& t) {
        t.support_nm = 5.0;
        t.support = t.tables[0];
        t.support_atoms_per_nm3 = HUGE_VAL;
      },
      // sizes whose products overflow
      [](render_settings& t) { t.ny = t.nx = std::size_t{1} << 32; },
      [](render_settings& t) {
        t.kernel_ry = std::size_t{1} << 63;
        t.kernel = {1.0f};
      },
  };
  for (auto spoil : spoilers) {
    render_settings bad = s;
    spoil(bad);
    bool refused = false;
    try {
      check_render_settings(bad);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    check(refused, "non-finite, overflowing or inconsistent settings are refused");
  }

  render_input turned = inputs[0];
  turned.has_rotation = true;
  turned.rotation.m[4] = std::nan("");
  bool refused = false;
  try {
    render_haadf(turned, s, out);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  check(refused, "a non-finite rotation is refused");

  const float kernel[1] = {1.0f};
  std::vector<float> source(4, 1.0f), result(4, 0.0f);
  int convolutions_refused = 0;
  for (const auto& [ny, nx] : {std::pair<std::size_t, std::size_t>{0, 4}, {4, 0}}) {
    try {
      convolve_replicate(source.data(), ny, nx, kernel, 0, 0, result.data());
    } catch (const std::invalid_argument&) {
      ++convolutions_refused;
    }
  }
  check(convolutions_refused == 2, "convolve_replicate refuses an empty image");
}

// The open-interval draws never reach 1, also from their all-ones inputs.
void test_unit_draws_stay_below_one() {
  check(bits_to_open_unit(0xffffffffu, 0xffffffffu) < 1.0 && bits_to_open_unit(0u, 0u) > 0.0,
        "bits_to_open_unit stays in (0, 1)");
  check(unit_float(0xffffffffu) < 1.0f && unit_float(0u) > 0.0f && unit_float(0xfffffeffu) < 1.0f,
        "unit_float stays in (0, 1)");
}

}  // namespace

int main() {
  test_single_sphere_centre();
  test_paths_match_brute_force();
  test_rotation_is_applied();
  test_poisson_moments();
  test_direct_draws_match_the_sequential_stream();
  test_convolution_brute_force();
  test_batch_and_errors();
  test_unit_draws_stay_below_one();
  return heteroagg_test::finish("render");
}
