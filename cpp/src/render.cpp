#include "heteroagg/render.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "format.hpp"
#include "parallel.hpp"

namespace heteroagg {

namespace {

const char* material_name(std::size_t m) { return m == 0 ? "TiO2" : m == 1 ? "WO3" : "material"; }

// Scratch buffers of one thread, reused between images.
struct workspace {
  std::vector<float> thickness, weighted, longest, padded, clean;
  std::vector<std::int32_t> head, owner;
  struct interval {
    float lo, hi;
    std::int32_t next;
  };
  std::vector<interval> intervals;
  std::vector<std::pair<float, float>> overlap;
};

workspace& thread_workspace() {
  thread_local workspace w;
  return w;
}

// Length of [lo, hi] not yet covered by the intervals listed at a pixel.
float uncovered_length(const workspace& w, std::int32_t node, float lo, float hi,
                       std::vector<std::pair<float, float>>& overlap) {
  overlap.clear();
  for (; node >= 0; node = w.intervals[static_cast<std::size_t>(node)].next) {
    const auto& iv = w.intervals[static_cast<std::size_t>(node)];
    const float a = std::max(lo, iv.lo), b = std::min(hi, iv.hi);
    if (b > a) overlap.emplace_back(a, b);
  }
  if (overlap.empty()) return hi - lo;
  std::sort(overlap.begin(), overlap.end());
  float covered = 0.0f, start = overlap[0].first, end = overlap[0].second;
  for (std::size_t k = 1; k < overlap.size(); ++k) {
    if (overlap[k].first > end) {
      covered += end - start;
      start = overlap[k].first;
      end = overlap[k].second;
    } else {
      end = std::max(end, overlap[k].second);
    }
  }
  covered += end - start;
  return std::max(0.0f, (hi - lo) - covered);
}

}  // namespace

namespace {

// Images and kernels hold at most this many pixels, which keeps every size
// product and the renderer's 32-bit interval links far from overflow.
constexpr std::size_t max_pixels = std::size_t{1} << 30;

void check_image_shape(std::size_t ny, std::size_t nx, const char* what) {
  if (ny == 0 || nx == 0) throw std::invalid_argument(std::string(what) + " shape must be positive");
  if (nx > max_pixels / ny)
    throw std::invalid_argument(std::string(what) + " of " + std::to_string(ny) + " x " + std::to_string(nx) +
                                " pixels exceeds the " + std::to_string(max_pixels) + " allowed");
}

void check_kernel_radii(std::size_t ry, std::size_t rx) {
  if (ry >= max_pixels || rx >= max_pixels) throw std::invalid_argument("kernel radii are too large");
  check_image_shape(2 * ry + 1, 2 * rx + 1, "kernel");
}

bool finite_table(const thickness_table& t) {
  if (!(t.step_nm > 0.0) || !std::isfinite(t.step_nm)) return false;
  for (std::size_t k = 0; k < t.density.size(); ++k)
    if (!std::isfinite(t.density[k]) || (k < t.spread.size() && !std::isfinite(t.spread[k]))) return false;
  return true;
}

}  // namespace

void check_render_settings(const render_settings& s) {
  check_image_shape(s.ny, s.nx, "image");
  if (!(s.pixel_nm > 0.0) || !std::isfinite(s.pixel_nm))
    throw std::invalid_argument("pixel size must be positive and finite (nm)");
  if (s.tables.empty()) throw std::invalid_argument("no thickness tables");
  for (const auto& t : s.tables)
    if (t.density.size() < 2 || !finite_table(t) || t.spread.size() != t.density.size())
      throw std::invalid_argument("a thickness table needs >= 2 finite entries, a positive finite step and a spread");
  if (!(s.support_nm >= 0.0) || !std::isfinite(s.support_nm))
    throw std::invalid_argument("the support film's thickness must be finite and >= 0 (nm)");
  if (s.support_nm > 0.0 && (s.support.density.size() < 2 || !finite_table(s.support) ||
                             !(s.support_atoms_per_nm3 > 0.0) || !std::isfinite(s.support_atoms_per_nm3)))
    throw std::invalid_argument("a support film needs a finite thickness table and a finite atom density");
  check_kernel_radii(s.kernel_ry, s.kernel_rx);
  if (s.kernel.size() != (2 * s.kernel_ry + 1) * (2 * s.kernel_rx + 1) && !s.kernel.empty())
    throw std::invalid_argument("kernel size does not match its radii");
  for (float k : s.kernel)
    if (!std::isfinite(k)) throw std::invalid_argument("kernel values must be finite");
  if (s.dose < 0.0 || !std::isfinite(s.dose)) throw std::invalid_argument("dose must be >= 0");
  if (!(s.scan_jitter_px >= 0.0) || !(s.read_noise >= 0.0) || !std::isfinite(s.scan_jitter_px) ||
      !std::isfinite(s.read_noise))
    throw std::invalid_argument("scan jitter and read noise must be finite and >= 0");
  if (!std::isfinite(s.gain) || !std::isfinite(s.black_level))
    throw std::invalid_argument("gain and black level must be finite");
}

namespace {

void too_thick(const char* what, double t, double max) {
  throw std::invalid_argument("a beam path of " + detail::format_number(t) + " nm through " + what +
                              " exceeds its LUT, which ends at " + detail::format_number(max) +
                              " nm; use a longer LUT or extrapolate=True");
}

// Shift every row by its own random horizontal offset (linear interpolation,
// edges extended), as a scan with line-to-line jitter records it.
void jitter_rows(float* image, std::size_t ny, std::size_t nx, double sigma_px, std::uint64_t seed,
                 std::vector<float>& row) {
  row.resize(nx);
  for (std::size_t i = 0; i < ny; ++i) {
    float* r = image + i * nx;
    std::copy(r, r + nx, row.begin());
    const double shift = sigma_px * normal_at(seed, render_stream_jitter, i);
    for (std::size_t j = 0; j < nx; ++j) r[j] = shifted_sample(row.data(), nx, j, shift);
  }
}

}  // namespace

double thickness_table::density_at(double t) const { return view().density_at(t); }

double thickness_table::intensity_at(double t) const { return -std::expm1(-density_at(t)); }

double thickness_table::spread_at(double t) const {
  const double max = max_thickness();
  if (t > max) {
    const double last = -std::expm1(-density.back());
    return last > 0.0 ? spread.back() * intensity_at(t) / last : 0.0;
  }
  return view().interpolate(spread.data(), t);
}

void check_path_length(const render_settings& s, std::size_t material, double deepest_nm) {
  const bool film = material == s.tables.size();
  const double max = film ? s.support.max_thickness() : s.tables[material].max_thickness();
  if (!s.extrapolate && deepest_nm > max * (1.0 + 1e-6))
    too_thick(film ? "the support film" : material_name(material), deepest_nm, max);
}

double support_column_atoms(const render_settings& s) {
  return s.support_atoms_per_nm3 * s.pixel_nm * s.pixel_nm * s.support_nm;
}

render_projection project_aggregate(const render_input& input, const render_settings& s) {
  if (input.n == 0) throw std::invalid_argument("the aggregate has no particles");
  const std::size_t nx = s.nx, ny = s.ny, n_materials = s.tables.size();
  const double px = s.pixel_nm;
  render_projection out;
  out.rotation = input.rotation;
  if (input.has_rotation)
    for (const double v : input.rotation.m)
      if (!std::isfinite(v)) throw std::invalid_argument("the rotation must be finite");
  if (input.has_center && !(std::isfinite(input.cx) && std::isfinite(input.cy)))
    throw std::invalid_argument("the field centre must be finite (nm)");
  if (!input.has_rotation) {
    philox_stream rng(input.seed, render_stream_rotation);
    out.rotation = random_rotation(rng);
  }
  out.centres.resize(input.n);
  double lo_x = std::numeric_limits<double>::infinity(), hi_x = -lo_x, lo_y = lo_x, hi_y = -lo_x;
  for (std::size_t i = 0; i < input.n; ++i) {
    const vec3 c{input.centers[3 * i], input.centers[3 * i + 1], input.centers[3 * i + 2]};
    const double r = input.radii[i];
    if (!(r > 0.0) || !std::isfinite(r) || !std::isfinite(c.x + c.y + c.z))
      throw std::invalid_argument("centres must be finite and radii positive");
    if (input.materials[i] >= n_materials) throw std::invalid_argument("material code without a table");
    out.centres[i] = out.rotation * c;
    lo_x = std::min(lo_x, out.centres[i].x - r);
    hi_x = std::max(hi_x, out.centres[i].x + r);
    lo_y = std::min(lo_y, out.centres[i].y - r);
    hi_y = std::max(hi_y, out.centres[i].y + r);
  }
  out.cx = input.has_center ? input.cx : 0.5 * (lo_x + hi_x);
  out.cy = input.has_center ? input.cy : 0.5 * (lo_y + hi_y);
  out.x0 = out.cx - 0.5 * static_cast<double>(nx - 1) * px;
  out.y0 = out.cy - 0.5 * static_cast<double>(ny - 1) * px;
  out.clipped = lo_x < out.x0 - 0.5 * px || hi_x > out.x0 + (static_cast<double>(nx) - 0.5) * px ||
                lo_y < out.y0 - 0.5 * px || hi_y > out.y0 + (static_cast<double>(ny) - 0.5) * px;

  // Per-particle brightness: a log-normal draw with the table's mean and spread.
  out.factor.assign(input.n, 1.0f);
  if (s.orientation_spread) {
    philox_stream rng(input.seed, render_stream_orientation);
    for (std::size_t i = 0; i < input.n; ++i) {
      const auto& table = s.tables[input.materials[i]];
      const double d = 2.0 * input.radii[i];
      const double mean = table.intensity_at(d), spread = table.spread_at(d);
      const double z = rng.normal();
      if (!(mean > 0.0)) continue;
      const double var = std::log1p((spread / mean) * (spread / mean));
      const double drawn = std::min(mean * std::exp(std::sqrt(var) * z - 0.5 * var), 1.0 - 1e-9);
      out.factor[i] = static_cast<float>(-std::log1p(-drawn) / table.density_at(d));
    }
  }
  return out;
}

namespace {

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HETEROAGG_VECTOR_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define HETEROAGG_VECTOR_CLONES
#endif

// One output row: sums of kernel-weighted rows of the padded image, kept in
// a block of accumulators so each output is stored once.
HETEROAGG_VECTOR_CLONES
void convolve_row(const float* padded, std::size_t wx, std::size_t nx, const float* kernel,
                  std::size_t ky, std::size_t kx, float* out) {
  constexpr std::size_t block = 32;
  std::size_t j0 = 0;
  for (; j0 + block <= nx; j0 += block) {
    float acc[block] = {};
    for (std::size_t a = 0; a < ky; ++a)
      for (std::size_t b = 0; b < kx; ++b) {
        const float k = kernel[a * kx + b];
        const float* r = padded + a * wx + j0 + b;
        for (std::size_t j = 0; j < block; ++j) acc[j] += k * r[j];
      }
    std::copy(acc, acc + block, out + j0);
  }
  for (std::size_t j = j0; j < nx; ++j) {
    float acc = 0.0f;
    for (std::size_t a = 0; a < ky; ++a)
      for (std::size_t b = 0; b < kx; ++b) acc += kernel[a * kx + b] * padded[a * wx + j + b];
    out[j] = acc;
  }
}

void convolve_into(const float* image, std::size_t ny, std::size_t nx, const float* kernel,
                   std::size_t ry, std::size_t rx, float* out, std::vector<float>& padded) {
  const std::size_t wx = nx + 2 * rx, ky = 2 * ry + 1, kx = 2 * rx + 1;
  padded.resize((ny + 2 * ry) * wx);
  for (std::size_t i = 0; i < ny + 2 * ry; ++i) {
    const std::size_t src = std::min(ny - 1, i < ry ? 0 : i - ry);
    float* row = padded.data() + i * wx;
    const float* from = image + src * nx;
    std::fill(row, row + rx, from[0]);
    std::copy(from, from + nx, row + rx);
    std::fill(row + rx + nx, row + wx, from[nx - 1]);
  }
  for (std::size_t i = 0; i < ny; ++i) convolve_row(padded.data() + i * wx, wx, nx, kernel, ky, kx, out + i * nx);
}

}  // namespace

void convolve_replicate(const float* image, std::size_t ny, std::size_t nx, const float* kernel,
                        std::size_t ry, std::size_t rx, float* out) {
  check_image_shape(ny, nx, "image");
  check_kernel_radii(ry, rx);
  std::vector<float> padded;
  convolve_into(image, ny, nx, kernel, ry, rx, out, padded);
}

namespace {

void render_with(const render_input& input, const render_settings& s, render_output& output, workspace& w) {
  if (output.image == nullptr) throw std::invalid_argument("no image buffer");
  const std::size_t ny = s.ny, nx = s.nx, pixels = ny * nx, n_materials = s.tables.size();
  const double px = s.pixel_nm;
  const render_projection projection = project_aggregate(input, s);
  const std::vector<vec3>& centres = projection.centres;
  const std::vector<float>& factor = projection.factor;
  const double x0 = projection.x0, y0 = projection.y0;
  output.rotation = projection.rotation;
  output.cx = projection.cx;
  output.cy = projection.cy;
  output.clipped = projection.clipped;

  // Path lengths per material at every pixel centre.
  const bool track_owner = output.particle != nullptr;
  w.thickness.assign(n_materials * pixels, 0.0f);
  if (s.orientation_spread) w.weighted.assign(n_materials * pixels, 0.0f);
  w.head.assign(pixels, -1);
  w.intervals.clear();
  if (track_owner) {
    w.longest.assign(pixels, 0.0f);
    w.owner.assign(pixels, -1);
  }
  for (std::size_t i = 0; i < input.n; ++i) {
    const vec3 c = centres[i];
    const double r = input.radii[i], r2 = r * r;
    const std::size_t m = input.materials[i];
    const double jf = std::ceil((c.x - r - x0) / px), jl = std::floor((c.x + r - x0) / px);
    const double i_f = std::ceil((c.y - r - y0) / px), il = std::floor((c.y + r - y0) / px);
    if (jl < 0 || il < 0 || jf > static_cast<double>(nx - 1) || i_f > static_cast<double>(ny - 1)) continue;
    const auto j_begin = static_cast<std::size_t>(std::max(0.0, jf));
    const auto j_end = static_cast<std::size_t>(std::min(static_cast<double>(nx - 1), jl)) + 1;
    const auto i_begin = static_cast<std::size_t>(std::max(0.0, i_f));
    const auto i_end = static_cast<std::size_t>(std::min(static_cast<double>(ny - 1), il)) + 1;
    float* thick = w.thickness.data() + m * pixels;
    float* weighted = s.orientation_spread ? w.weighted.data() + m * pixels : nullptr;
    for (std::size_t row = i_begin; row < i_end; ++row) {
      const double dy = y0 + static_cast<double>(row) * px - c.y;
      const double rest = r2 - dy * dy;
      if (rest <= 0.0) continue;
      for (std::size_t col = j_begin; col < j_end; ++col) {
        const double dx = x0 + static_cast<double>(col) * px - c.x;
        const double h2 = rest - dx * dx;
        if (h2 <= 0.0) continue;
        const double h = std::sqrt(h2);
        const std::size_t p = row * nx + col;
        const auto lo = static_cast<float>(c.z - h), hi = static_cast<float>(c.z + h);
        const float length = w.head[p] < 0 ? static_cast<float>(2.0 * h)
                                           : uncovered_length(w, w.head[p], lo, hi, w.overlap);
        w.intervals.push_back({lo, hi, w.head[p]});
        w.head[p] = static_cast<std::int32_t>(w.intervals.size() - 1);
        thick[p] += length;
        if (weighted) weighted[p] += factor[i] * length;
        if (track_owner && length > w.longest[p]) {
          w.longest[p] = length;
          w.owner[p] = static_cast<std::int32_t>(i);
        }
      }
    }
  }
  std::vector<const float*> thick(n_materials), weighted(n_materials);
  std::vector<float> deepest(n_materials, 0.0f);
  for (std::size_t m = 0; m < n_materials; ++m) {
    thick[m] = w.thickness.data() + m * pixels;
    weighted[m] = s.orientation_spread ? w.weighted.data() + m * pixels : nullptr;
    for (std::size_t p = 0; p < pixels; ++p) deepest[m] = std::max(deepest[m], thick[m][p]);
    check_path_length(s, m, deepest[m]);
  }

  // Intensities: materials (and the support film) add in optical density.
  float* clean = output.clean;
  if (clean == nullptr) {
    w.clean.resize(pixels);
    clean = w.clean.data();
  }
  const bool support = s.support_nm > 0.0;
  const double support_atoms = support_column_atoms(s);
  if (support) check_path_length(s, n_materials, s.support_nm);
  const double support_density = support ? s.support.density_at(s.support_nm) : 0.0;
  for (std::size_t p = 0; p < pixels; ++p) {
    double density = 0.0;
    for (std::size_t m = 0; m < n_materials; ++m) {
      const float t = thick[m][p];
      if (t <= 0.0f) continue;
      double dm = s.tables[m].density_at(t);
      if (weighted[m]) dm *= static_cast<double>(weighted[m][p]) / t;
      density += dm;
    }
    if (support)
      density += support_density * support_column_share(input.seed, render_stream_support, p, support_atoms);
    clean[p] = density > 0.0 ? static_cast<float>(-std::expm1(-density)) : 0.0f;
  }
  if (output.thickness) std::copy(w.thickness.begin(), w.thickness.end(), output.thickness);
  if (output.particle) std::copy(w.owner.begin(), w.owner.begin() + pixels, output.particle);
  if (output.material)
    for (std::size_t p = 0; p < pixels; ++p) {
      // the material the beam crosses most of, summed over its particles
      std::int8_t label = -1;
      float longest = 0.0f;
      for (std::size_t m = 0; m < n_materials; ++m)
        if (thick[m][p] > longest) {
          longest = thick[m][p];
          label = static_cast<std::int8_t>(m);
        }
      output.material[p] = label;
    }

  // Image formation: probe blur, scan jitter, shot noise, detector response.
  float* image = output.image;
  if (!s.kernel.empty())
    convolve_into(clean, ny, nx, s.kernel.data(), s.kernel_ry, s.kernel_rx, image, w.padded);
  else if (image != clean)
    std::copy(clean, clean + pixels, image);
  if (s.scan_jitter_px > 0.0) {
    std::vector<float> row;
    jitter_rows(image, ny, nx, s.scan_jitter_px, input.seed, row);
  }
  if (s.dose > 0.0) {
    const double electrons = s.dose * (10.0 * px) * (10.0 * px);  // per pixel
    for (std::size_t p = 0; p < pixels; ++p)
      image[p] = shot_noise_pixel(input.seed, render_stream_shot, p, electrons, image[p]);
  }
  if (s.gain != 1.0 || s.black_level != 0.0 || s.read_noise > 0.0)
    for (std::size_t p = 0; p < pixels; ++p) {
      double v = s.black_level + s.gain * image[p];
      if (s.read_noise > 0.0) v += s.read_noise * normal_at(input.seed, render_stream_read, p);
      image[p] = static_cast<float>(v);
    }
}

}  // namespace

void render_haadf(const render_input& input, const render_settings& settings, render_output& output) {
  check_render_settings(settings);
  // Scratch is kept for the usual image sizes; that of very large ones is given back.
  struct release_if_large {
    workspace& w;
    bool large;
    ~release_if_large() {
      if (large) w = workspace{};
    }
  } scratch{thread_workspace(), settings.ny * settings.nx > (std::size_t{1} << 22)};
  render_with(input, settings, output, scratch.w);
}

void render_haadf_batch(const std::vector<render_input>& inputs, const render_settings& settings,
                        std::vector<render_output>& outputs, unsigned threads) {
  if (outputs.size() != inputs.size()) throw std::invalid_argument("one output per input");
  check_render_settings(settings);
  detail::parallel_for(inputs.size(), threads, [&](std::size_t i, unsigned) {
    render_haadf(inputs[i], settings, outputs[i]);
  });
}

}  // namespace heteroagg
