// Per-pixel steps of the LUT renderer, compiled for host and device so that
// the CPU renderer (render.cpp) and its CUDA twin run the same arithmetic:
// table interpolation, the random draws of one pixel or scan line, and the
// Poisson sampler.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "heteroagg/rng.hpp"

namespace heteroagg {

// A thickness table as plain arrays: entries at t_k = k * step_nm.
struct table_view {
  const double* density = nullptr;  // -ln(1 - I), density[0] = 0
  const double* spread = nullptr;   // orientation spread of I
  std::size_t size = 0;
  double step_nm = 0.0;

  HETEROAGG_HD double max_thickness() const { return step_nm * static_cast<double>(size - 1); }

  // Linear interpolation of `values` at t, held at the last entry beyond it.
  HETEROAGG_HD double interpolate(const double* values, double t) const {
    const double x = t / step_nm;
    const std::size_t last = size - 1;
    if (x >= static_cast<double>(last)) return values[last];
    const auto k = static_cast<std::size_t>(x);
    const double w = x - static_cast<double>(k);
    return values[k] + w * (values[k + 1] - values[k]);
  }

  // D(t); beyond the table D grows in proportion to t.
  HETEROAGG_HD double density_at(double t) const {
    const double max = max_thickness();
    if (t > max) return density[size - 1] * t / max;
    return interpolate(density, t);
  }
};

// Stream of pixel (or scan line) `index` for draws that vary in length, such
// as Poisson counts: each gets its own counter range, so pixels can be drawn
// in any order.  Stream ids below 256 stay free for whole-image streams.
HETEROAGG_HD inline std::uint64_t pixel_stream(std::uint64_t stream, std::uint64_t index) {
  return ((index + 1) << 8) | stream;
}

// Normal draw number `k` of philox_stream(seed, stream).normal(): one draw
// uses exactly one Philox block.
HETEROAGG_HD inline double normal_at(std::uint64_t seed, std::uint64_t stream, std::uint64_t k) {
  const philox_block words = philox4x32_10(
      philox_block{{static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(k >> 32),
                    static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}},
      static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  const double u1 = bits_to_open_unit(words.v[0], words.v[1]);
  const double u2 = bits_to_open_unit(words.v[2], words.v[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Uniform float in (0, 1) from 24 random bits; the top bin's midpoint, which
// rounds to 1, is returned as the largest float below 1.
HETEROAGG_HD inline float unit_float(std::uint32_t bits) {
  const float u = (static_cast<float>(bits >> 8) + 0.5f) * (1.0f / 16777216.0f);
  return u < 1.0f ? u : 1.0f - 1.0f / 16777216.0f;
}

// log(k!).  glibc's lgamma also writes the global signgam, a data race when
// threads draw noise at once; its lgamma_r returns the same value without.
HETEROAGG_HD inline double log_factorial(double k) {
#if defined(__GLIBC__) && !defined(__CUDA_ARCH__)
  int sign = 0;
  return ::lgamma_r(k + 1.0, &sign);
#else
  return std::lgamma(k + 1.0);
#endif
}

// A Poisson draw of mean `mean` >= 0: inversion below 10, else transformed
// rejection with squeeze (W. Hormann, Insurance Math. Econom. 12, 39 (1993)),
// in single precision up to 1e6 where that is exact enough for the integer.
HETEROAGG_HD inline std::uint64_t poisson(philox_stream& rng, double mean) {
  if (!(mean > 0.0)) return 0;
  if (mean < 10.0) {
    const float limit = std::exp(-static_cast<float>(mean));
    std::uint64_t k = 0;
    float product = unit_float(rng.next_u32());
    while (product > limit) {
      ++k;
      product *= unit_float(rng.next_u32());
    }
    return k;
  }
  if (mean < 1e6) {
    const float lam = static_cast<float>(mean), slam = std::sqrt(lam);
    const float b = 0.931f + 2.53f * slam, a = -0.059f + 0.02483f * b;
    const float vr = 0.9277f - 3.6224f / (b - 2.0f);
    for (;;) {
      const float u = unit_float(rng.next_u32()) - 0.5f;
      const float v = unit_float(rng.next_u32());
      const float us = 0.5f - std::fabs(u);
      const float k = std::floor((2.0f * a / us + b) * u + lam + 0.43f);
      if (us >= 0.07f && v <= vr) return static_cast<std::uint64_t>(k);
      if (k < 0.0f || (us < 0.013f && v > us)) continue;
      const double kd = k, inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
      if (std::log(static_cast<double>(v) * inv_alpha / (a / (us * us) + b)) <=
          -mean + kd * std::log(mean) - log_factorial(kd))
        return static_cast<std::uint64_t>(kd);
    }
  }
  const double slam = std::sqrt(mean);
  const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    const double u = rng.uniform() - 0.5;
    const double v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2.0 * a / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= vr) return static_cast<std::uint64_t>(k);
    if (k < 0.0 || (us < 0.013 && v > us)) continue;
    if (std::log(v * inv_alpha / (a / (us * us) + b)) <= -mean + k * std::log(mean) - log_factorial(k))
      return static_cast<std::uint64_t>(k);
  }
}

// Shot noise of one pixel: a Poisson count of `electrons * signal` over
// `electrons`, drawn from the pixel's own stream.
HETEROAGG_HD inline float shot_noise_pixel(std::uint64_t seed, std::uint64_t stream, std::uint64_t pixel,
                                           double electrons, float signal) {
  philox_stream rng(seed, pixel_stream(stream, pixel));
  const double mean = electrons * static_cast<double>(signal > 0.0f ? signal : 0.0f);
  return static_cast<float>(static_cast<double>(poisson(rng, mean)) / electrons);
}

// The support film's share over one pixel, as a factor on the film's optical
// density: the pixel's column holds a Poisson number of atoms of mean `atoms`,
// and the film's scattering there is in proportion to them.  The factor is
// never negative and its mean is 1, so the film's mean brightness is the
// LUT's at any pixel size (a thickness drawn per pixel instead would average
// the LUT's curvature in).  `stream` is the render's support stream.
HETEROAGG_HD inline double support_column_share(std::uint64_t seed, std::uint64_t stream, std::uint64_t pixel,
                                                double atoms) {
  philox_stream rng(seed, pixel_stream(stream, pixel));
  return static_cast<double>(poisson(rng, atoms)) / atoms;
}

// Pixel j of a scan line shifted by `shift` pixels: linear interpolation
// with the edges extended.
HETEROAGG_HD inline float shifted_sample(const float* row, std::size_t nx, std::size_t j, double shift) {
  double x = static_cast<double>(j) + shift;
  const double last = static_cast<double>(nx - 1);
  x = x < 0.0 ? 0.0 : (x > last ? last : x);
  const auto k = static_cast<std::size_t>(x);
  const std::size_t k1 = k + 1 < nx ? k + 1 : nx - 1;
  const auto w = static_cast<float>(x - static_cast<double>(k));
  return row[k] + w * (row[k1] - row[k]);
}

}  // namespace heteroagg
