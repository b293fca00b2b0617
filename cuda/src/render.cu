// CUDA twin of the LUT renderer (cpp/src/render.cpp).
//
// The host projects every aggregate with the CPU renderer's own code
// (project_aggregate) and packs the rotated spheres of many images into flat
// arrays.  Three kernels then draw the whole batch:
//   1. path_kernel: one thread per pixel walks its image's spheres in index
//      order, measures the part of each beam path not yet covered by
//      lower-indexed spheres (a sorted list of merged intervals per pixel),
//      and turns the per-material lengths into the noise-free intensity;
//   2. blur_kernel: convolution with the probe intensity, edges extended;
//   3. finish_kernel: scan-line jitter, shot noise and the detector response.
// Every random draw is the CPU renderer's: per-pixel and per-line streams
// from render_pixel.hpp.  This file is compiled without FMA contraction so
// that the geometry rounds as the host's does.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "heteroagg/render.hpp"
#include "heteroagg/render_pixel.hpp"
#include "heteroagg_cuda/device_memory.hpp"
#include "heteroagg_cuda/render.hpp"
#include "parallel.hpp"

namespace heteroagg::cuda {

namespace {

constexpr int tile = 16;                 // pixels per block side
constexpr int chunk = tile * tile;       // spheres staged in shared memory at a time
constexpr int max_materials = 4;
constexpr int interval_capacity = 48;    // merged path intervals one pixel can hold

struct sphere_record {
  double x, y, z, r;
};

struct image_record {
  long long first = 0, count = 0;  // its spheres in the flat arrays
  double x0 = 0.0, y0 = 0.0;       // nm at the centre of pixel (0, 0)
  std::uint64_t seed = 0;
};

struct pixel_settings {
  int ny = 0, nx = 0, n_materials = 0;
  double pixel_nm = 0.0;
  table_view tables[max_materials];
  bool orientation_spread = false, track_depth = false;
  double support_nm = 0.0, support_atoms = 0.0;
  table_view support;
};

struct finish_settings {
  int ny = 0, nx = 0;
  double jitter_px = 0.0, electrons = 0.0, gain = 1.0, black_level = 0.0, read_noise = 0.0;
};

// Length of [lo, hi] outside the merged intervals, then [lo, hi] merged in.
// Returns false when the list is full.
__device__ bool cover(float* lo_list, float* hi_list, int& count, float lo, float hi, float& uncovered) {
  float covered = 0.0f;
  int first = count, last = -1;
  for (int k = 0; k < count; ++k) {
    const float a = fmaxf(lo, lo_list[k]), b = fminf(hi, hi_list[k]);
    if (b > a) covered += b - a;
    // Intervals that touch or overlap [lo, hi] merge with it, as on the host.
    if (hi_list[k] >= lo && lo_list[k] <= hi) {
      first = min(first, k);
      last = k;
    }
  }
  uncovered = fmaxf(0.0f, (hi - lo) - covered);
  if (last < 0) {  // no overlap: insert in order
    if (count == interval_capacity) return false;
    int k = count;
    while (k > 0 && lo_list[k - 1] > lo) {
      lo_list[k] = lo_list[k - 1];
      hi_list[k] = hi_list[k - 1];
      --k;
    }
    lo_list[k] = lo;
    hi_list[k] = hi;
    ++count;
    return true;
  }
  lo_list[first] = fminf(lo, lo_list[first]);
  hi_list[first] = fmaxf(hi, hi_list[last]);
  const int removed = last - first;
  for (int k = last + 1; k < count; ++k) {
    lo_list[k - removed] = lo_list[k];
    hi_list[k - removed] = hi_list[k];
  }
  count -= removed;
  return true;
}

__device__ unsigned warp_max(unsigned v) {
  for (int offset = 16; offset > 0; offset /= 2) v = max(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

__global__ void __launch_bounds__(chunk) path_kernel(const sphere_record* spheres, const std::uint8_t* materials,
                                                     const float* factors, const image_record* images,
                                                     pixel_settings s, float* clean, unsigned* deepest,
                                                     int* overflow) {
  __shared__ sphere_record staged[chunk];
  __shared__ int columns[chunk][2], rows[chunk][2];
  __shared__ std::uint8_t staged_material[chunk];
  __shared__ float staged_factor[chunk];

  const image_record image = images[blockIdx.z];
  const int col = static_cast<int>(blockIdx.x) * tile + static_cast<int>(threadIdx.x);
  const int row = static_cast<int>(blockIdx.y) * tile + static_cast<int>(threadIdx.y);
  const int lane = static_cast<int>(threadIdx.y) * tile + static_cast<int>(threadIdx.x);
  const bool inside = col < s.nx && row < s.ny;
  const double px = s.pixel_nm;

  float lo_list[interval_capacity], hi_list[interval_capacity];
  int count = 0;
  bool full = false;
  float thick[max_materials] = {}, weighted[max_materials] = {};
  const double dy_base = image.y0 + static_cast<double>(row) * px;
  const double dx_base = image.x0 + static_cast<double>(col) * px;

  for (long long start = 0; start < image.count; start += chunk) {
    const long long staged_count = min(static_cast<long long>(chunk), image.count - start);
    if (lane < staged_count) {
      const long long i = image.first + start + lane;
      const sphere_record c = spheres[i];
      staged[lane] = c;
      staged_material[lane] = materials[i];
      staged_factor[lane] = factors[i];
      // The pixel range the host loops over: columns ceil((x - r - x0) / px)
      // to floor((x + r - x0) / px), clamped to [-1, n].
      const auto clamp = [](double v, int n) { return static_cast<int>(fmin(fmax(v, -1.0), static_cast<double>(n))); };
      columns[lane][0] = clamp(ceil((c.x - c.r - image.x0) / px), s.nx);
      columns[lane][1] = clamp(floor((c.x + c.r - image.x0) / px), s.nx);
      rows[lane][0] = clamp(ceil((c.y - c.r - image.y0) / px), s.ny);
      rows[lane][1] = clamp(floor((c.y + c.r - image.y0) / px), s.ny);
    }
    __syncthreads();
    if (inside && !full)
      for (int k = 0; k < staged_count; ++k) {
        if (col < columns[k][0] || col > columns[k][1] || row < rows[k][0] || row > rows[k][1]) continue;
        const sphere_record c = staged[k];
        const double dy = dy_base - c.y;
        const double rest = c.r * c.r - dy * dy;
        if (rest <= 0.0) continue;
        const double dx = dx_base - c.x;
        const double h2 = rest - dx * dx;
        if (h2 <= 0.0) continue;
        const double h = sqrt(h2);
        const auto lo = static_cast<float>(c.z - h), hi = static_cast<float>(c.z + h);
        float length;
        if (count == 0) {
          length = static_cast<float>(2.0 * h);
          lo_list[0] = lo;
          hi_list[0] = hi;
          count = 1;
        } else if (!cover(lo_list, hi_list, count, lo, hi, length)) {
          full = true;
          break;
        }
        const int m = staged_material[k];
        thick[m] += length;
        weighted[m] += staged_factor[k] * length;
      }
    __syncthreads();
  }
  if (full) atomicOr(overflow + blockIdx.z, 1);

  if (s.track_depth)
    for (int m = 0; m < s.n_materials; ++m) {
      // Lengths are >= 0, so their bit patterns order as their values.
      const unsigned bits = warp_max(inside ? __float_as_uint(thick[m]) : 0u);
      if ((lane & 31) == 0) atomicMax(deepest + blockIdx.z * s.n_materials + m, bits);
    }
  if (!inside) return;

  double density = 0.0;
  for (int m = 0; m < s.n_materials; ++m) {
    const float t = thick[m];
    if (t <= 0.0f) continue;
    double dm = s.tables[m].density_at(t);
    if (s.orientation_spread) dm *= static_cast<double>(weighted[m]) / t;
    density += dm;
  }
  const std::size_t pixel = static_cast<std::size_t>(row) * static_cast<std::size_t>(s.nx) + static_cast<std::size_t>(col);
  if (s.support_nm > 0.0) {
    density += s.support.density_at(s.support_nm) *
               support_column_share(image.seed, render_stream_support, pixel, s.support_atoms);
  }
  const std::size_t area = static_cast<std::size_t>(s.ny) * static_cast<std::size_t>(s.nx);
  clean[blockIdx.z * area + pixel] = density > 0.0 ? static_cast<float>(-expm1(-density)) : 0.0f;
}

// Convolution with the (2 ry + 1) x (2 rx + 1) kernel, edges extended.
__global__ void blur_kernel(const float* in, float* out, const float* kernel, int ry, int rx, int ny, int nx) {
  const int col = static_cast<int>(blockIdx.x) * tile + static_cast<int>(threadIdx.x);
  const int row = static_cast<int>(blockIdx.y) * tile + static_cast<int>(threadIdx.y);
  if (col >= nx || row >= ny) return;
  const std::size_t area = static_cast<std::size_t>(ny) * static_cast<std::size_t>(nx);
  const float* image = in + blockIdx.z * area;
  const int kx = 2 * rx + 1;
  float acc = 0.0f;
  for (int a = 0; a <= 2 * ry; ++a) {
    const int i = min(ny - 1, max(0, row - ry + a));
    const float* line = image + static_cast<std::size_t>(i) * nx;
    for (int b = 0; b < kx; ++b) acc += kernel[a * kx + b] * line[min(nx - 1, max(0, col - rx + b))];
  }
  out[blockIdx.z * area + static_cast<std::size_t>(row) * nx + col] = acc;
}

// Scan-line jitter, shot noise and the detector, as render_haadf applies them.
__global__ void finish_kernel(const float* in, float* out, const image_record* images, finish_settings s) {
  const int col = static_cast<int>(blockIdx.x) * tile + static_cast<int>(threadIdx.x);
  const int row = static_cast<int>(blockIdx.y) * tile + static_cast<int>(threadIdx.y);
  if (col >= s.nx || row >= s.ny) return;
  const std::uint64_t seed = images[blockIdx.z].seed;
  const std::size_t area = static_cast<std::size_t>(s.ny) * static_cast<std::size_t>(s.nx);
  const std::size_t pixel = static_cast<std::size_t>(row) * s.nx + col;
  const float* line = in + blockIdx.z * area + static_cast<std::size_t>(row) * s.nx;
  float v = line[col];
  if (s.jitter_px > 0.0)
    v = shifted_sample(line, static_cast<std::size_t>(s.nx), static_cast<std::size_t>(col),
                       s.jitter_px * normal_at(seed, render_stream_jitter, static_cast<std::uint64_t>(row)));
  if (s.electrons > 0.0) v = shot_noise_pixel(seed, render_stream_shot, pixel, s.electrons, v);
  if (s.gain != 1.0 || s.black_level != 0.0 || s.read_noise > 0.0) {
    double d = s.black_level + s.gain * v;
    if (s.read_noise > 0.0) d += s.read_noise * normal_at(seed, render_stream_read, pixel);
    v = static_cast<float>(d);
  }
  out[blockIdx.z * area + pixel] = v;
}

// The settings' tables copied to the device, with views into them.
struct device_tables {
  device_array<double> data;
  table_view views[max_materials + 1];

  explicit device_tables(const render_settings& s) : data(total(s)) {
    std::vector<double> host;
    std::vector<std::size_t> offsets;
    const auto add = [&](const thickness_table& t) {
      offsets.push_back(host.size());
      host.insert(host.end(), t.density.begin(), t.density.end());
      host.insert(host.end(), t.spread.begin(), t.spread.end());
    };
    for (const auto& t : s.tables) add(t);
    if (s.support_nm > 0.0) add(s.support);
    data.upload(host.data(), host.size());
    for (std::size_t k = 0; k < offsets.size(); ++k) {
      const thickness_table& t = k < s.tables.size() ? s.tables[k] : s.support;
      const double* base = data.get() + offsets[k];
      views[k] = table_view{base, base + t.density.size(), t.density.size(), t.step_nm};
    }
  }

  static std::size_t total(const render_settings& s) {
    std::size_t n = 0;
    for (const auto& t : s.tables) n += 2 * t.density.size();
    if (s.support_nm > 0.0) n += 2 * s.support.density.size();
    return n;
  }
};

}  // namespace

void render_haadf_batch(const std::vector<render_input>& inputs, const render_settings& settings,
                        std::vector<render_output>& outputs, float* images, bool images_on_device,
                        unsigned threads) {
  if (outputs.size() != inputs.size()) throw std::invalid_argument("one output per input");
  check_render_settings(settings);
  if (settings.tables.size() > static_cast<std::size_t>(max_materials))
    throw std::invalid_argument("the CUDA renderer takes at most 4 materials");
  if (settings.ny > (1u << 16) || settings.nx > (1u << 16))
    throw std::invalid_argument("the CUDA renderer takes images of at most 65536 pixels a side");
  for (const auto& out : outputs)
    if (out.clean || out.thickness || out.material || out.particle)
      throw std::invalid_argument("label maps are drawn by the CPU renderer");
  if (inputs.empty()) return;
  if (images == nullptr) throw std::invalid_argument("no image buffer");

  std::vector<render_projection> projections(inputs.size());
  detail::parallel_for(inputs.size(), threads, [&](std::size_t i, unsigned) {
    projections[i] = project_aggregate(inputs[i], settings);
  });
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    outputs[i].rotation = projections[i].rotation;
    outputs[i].cx = projections[i].cx;
    outputs[i].cy = projections[i].cy;
    outputs[i].clipped = projections[i].clipped;
  }

  const int ny = static_cast<int>(settings.ny), nx = static_cast<int>(settings.nx);
  const std::size_t area = settings.ny * settings.nx;
  const auto n_materials = static_cast<int>(settings.tables.size());
  const device_tables tables(settings);
  pixel_settings ps;
  ps.ny = ny;
  ps.nx = nx;
  ps.n_materials = n_materials;
  ps.pixel_nm = settings.pixel_nm;
  for (int m = 0; m < n_materials; ++m) ps.tables[m] = tables.views[m];
  ps.orientation_spread = settings.orientation_spread;
  ps.track_depth = !settings.extrapolate;
  if (settings.support_nm > 0.0) {
    ps.support_nm = settings.support_nm;
    ps.support = tables.views[n_materials];
    ps.support_atoms = support_column_atoms(settings);
    check_path_length(settings, settings.tables.size(), settings.support_nm);
  }
  finish_settings fs;
  fs.ny = ny;
  fs.nx = nx;
  fs.jitter_px = settings.scan_jitter_px;
  fs.electrons = settings.dose > 0.0 ? settings.dose * (10.0 * settings.pixel_nm) * (10.0 * settings.pixel_nm) : 0.0;
  fs.gain = settings.gain;
  fs.black_level = settings.black_level;
  fs.read_noise = settings.read_noise;
  const bool blur = !settings.kernel.empty();
  const bool finish = fs.jitter_px > 0.0 || fs.electrons > 0.0 || fs.gain != 1.0 || fs.black_level != 0.0 ||
                      fs.read_noise > 0.0;
  device_array<float> kernel(settings.kernel.size());
  kernel.upload(settings.kernel.data(), settings.kernel.size());

  // Batches of images that keep the scratch under about 512 MiB.
  const std::size_t per_batch = std::clamp<std::size_t>((std::size_t{512} << 20) / (3 * area * sizeof(float)), 1, 65535);
  const std::size_t batch = std::min(per_batch, inputs.size());
  device_array<float> clean(batch * area), blurred(blur && finish ? batch * area : 0);
  device_array<float> staging(images_on_device ? 0 : batch * area);
  // Pageable host memory receives device copies at a few GB/s; pinned, at the bus's speed.
  const pinned_host_range pinned_images(images_on_device ? nullptr : images, inputs.size() * area * sizeof(float));
  device_array<image_record> d_images(batch);
  device_array<unsigned> d_deepest(batch * static_cast<std::size_t>(n_materials));
  device_array<int> d_overflow(batch);

  for (std::size_t first = 0; first < inputs.size(); first += batch) {
    const std::size_t count = std::min(batch, inputs.size() - first);
    std::vector<image_record> records(count);
    std::size_t spheres = 0;
    for (std::size_t k = 0; k < count; ++k) spheres += inputs[first + k].n;
    std::vector<sphere_record> host_spheres;
    std::vector<std::uint8_t> host_materials;
    std::vector<float> host_factors;
    host_spheres.reserve(spheres);
    host_materials.reserve(spheres);
    host_factors.reserve(spheres);
    for (std::size_t k = 0; k < count; ++k) {
      const render_input& in = inputs[first + k];
      const render_projection& p = projections[first + k];
      records[k] = image_record{static_cast<long long>(host_spheres.size()), static_cast<long long>(in.n), p.x0, p.y0,
                                in.seed};
      for (std::size_t i = 0; i < in.n; ++i) {
        host_spheres.push_back({p.centres[i].x, p.centres[i].y, p.centres[i].z, in.radii[i]});
        host_materials.push_back(in.materials[i]);
        host_factors.push_back(p.factor[i]);
      }
    }
    device_array<sphere_record> d_spheres(spheres);
    device_array<std::uint8_t> d_materials(spheres);
    device_array<float> d_factors(spheres);
    d_spheres.upload(host_spheres.data(), spheres);
    d_materials.upload(host_materials.data(), spheres);
    d_factors.upload(host_factors.data(), spheres);
    d_images.upload(records.data(), count);
    check(cudaMemset(d_deepest.get(), 0, d_deepest.size() * sizeof(unsigned)), "cudaMemset");
    check(cudaMemset(d_overflow.get(), 0, d_overflow.size() * sizeof(int)), "cudaMemset");

    float* target = images_on_device ? images + first * area : staging.get();
    const dim3 block(tile, tile);
    const dim3 grid(static_cast<unsigned>((nx + tile - 1) / tile), static_cast<unsigned>((ny + tile - 1) / tile),
                    static_cast<unsigned>(count));
    float* path_out = blur || finish ? clean.get() : target;
    path_kernel<<<grid, block>>>(d_spheres.get(), d_materials.get(), d_factors.get(), d_images.get(), ps, path_out,
                                 d_deepest.get(), d_overflow.get());
    check(cudaGetLastError(), "path_kernel launch");
    const float* blur_in = clean.get();
    if (blur) {
      float* blur_out = finish ? blurred.get() : target;
      blur_kernel<<<grid, block>>>(clean.get(), blur_out, kernel.get(), static_cast<int>(settings.kernel_ry),
                                   static_cast<int>(settings.kernel_rx), ny, nx);
      check(cudaGetLastError(), "blur_kernel launch");
      blur_in = blur_out;
    }
    if (finish) {
      finish_kernel<<<grid, block>>>(blur_in, target, d_images.get(), fs);
      check(cudaGetLastError(), "finish_kernel launch");
    }

    std::vector<unsigned> deepest(count * static_cast<std::size_t>(n_materials));
    std::vector<int> overflow(count);
    d_deepest.download(deepest.data(), deepest.size());
    d_overflow.download(overflow.data(), count);
    if (!settings.extrapolate)
      for (std::size_t k = 0; k < count; ++k) {
        if (overflow[k]) continue;  // redrawn on the host below, which checks it
        for (int m = 0; m < n_materials; ++m) {
          float t;
          std::memcpy(&t, &deepest[k * n_materials + m], sizeof t);
          check_path_length(settings, static_cast<std::size_t>(m), t);
        }
      }
    if (!images_on_device) staging.download(images + first * area, count * area);
    std::vector<float> host_image;
    for (std::size_t k = 0; k < count; ++k) {
      if (!overflow[k]) continue;
      host_image.resize(area);
      render_output out;
      out.image = images_on_device ? host_image.data() : images + (first + k) * area;
      render_haadf(inputs[first + k], settings, out);
      if (images_on_device)
        check(cudaMemcpy(images + (first + k) * area, host_image.data(), area * sizeof(float),
                         cudaMemcpyHostToDevice),
              "upload of a host-drawn image");
    }
  }
  check(cudaDeviceSynchronize(), "render_haadf_batch");
}

}  // namespace heteroagg::cuda
