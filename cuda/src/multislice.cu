// CUDA twin of the multislice in cpp/src/multislice.cpp.
//
// The host side shares prepare_multislice and place_probe with the CPU path;
// the device holds the transmission functions of every slice and a batch of
// probe wave functions, which one batched cuFFT plan transforms at once.
// Per slice and batch: inverse FFT, transmission (with the inverse FFT's
// 1/N folded in), forward FFT, propagator; detectors integrate |psi_k|^2 at
// the exit planes.
//
// With fused steps (power-of-two windows of at most 1024 points a side) each
// slice is instead one kernel over rows and one over columns, the twins of
// fft2_plan::rows_pass and fft2_plan::columns_pass: each reads the waves
// once, transforms in shared memory, multiplies and transforms back, and
// between slices the waves keep only their rows transformed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "heteroagg/multislice.hpp"
#include "heteroagg_cuda/cufft_library.hpp"
#include "heteroagg_cuda/device_memory.hpp"
#include "heteroagg_cuda/multislice.hpp"
#include "heteroagg_cuda/potential.hpp"
#include "batched_fft.hpp"

namespace heteroagg::cuda {

namespace {

constexpr double pi = 3.14159265358979323846;
constexpr unsigned threads_per_block = 256;

unsigned blocks_for(std::size_t n) { return static_cast<unsigned>((n + threads_per_block - 1) / threads_per_block); }

__device__ float2 mul(float2 a, float2 b) { return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }

__device__ double frequency(std::size_t i, std::size_t n, double d) {
  const auto k = static_cast<double>(i);
  const auto nn = static_cast<double>(n);
  return (i < (n + 1) / 2 ? k : k - nn) / (nn * d);
}

// exp(i sigma V) of every potential pixel (single precision, as the CPU path).
__global__ void transmission_kernel(const float* potential, float2* t, float sigma, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float phase = sigma * potential[i];
  t[i] = make_float2(cosf(phase), sinf(phase));
}

// data *= weight[i mod area] * factor (band limit and FFT normalisation).
__global__ void scale_kernel(float2* data, const float* weight, float factor, std::size_t area, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float w = weight[i % area] * factor;
  data[i] = make_float2(data[i].x * w, data[i].y * w);
}

// psi_b(k) = base(k) * ramp_y(b) * ramp_x(b), the probe shifted to (px, py).
__global__ void probe_kernel(const float2* base, const double* px, const double* py, float2* psi, std::size_t ny,
                             std::size_t nx, double dy, double dx, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const std::size_t area = ny * nx, b = i / area, pixel = i % area, iy = pixel / nx, ix = pixel % nx;
  const double phase_x = -2.0 * pi * frequency(ix, nx, dx) * px[b];
  const double phase_y = -2.0 * pi * frequency(iy, ny, dy) * py[b];
  const float2 ramp_x = make_float2(static_cast<float>(cos(phase_x)), static_cast<float>(sin(phase_x)));
  const float2 ramp_y = make_float2(static_cast<float>(cos(phase_y)), static_cast<float>(sin(phase_y)));
  psi[i] = mul(base[pixel], mul(ramp_y, ramp_x));
}

// psi *= factor * t(window origin + pixel), read periodically from the slice.
// Grid (column blocks, rows, probes) with 32-bit indices; the origins come
// wrapped into the slice, so the periodic read needs no division.
__global__ void transmit_kernel(float2* psi, const float2* t, const unsigned* oy, const unsigned* ox, unsigned ny,
                                unsigned nx, unsigned full_ny, unsigned full_nx, float factor) {
  const unsigned ix = blockIdx.x * blockDim.x + threadIdx.x, iy = blockIdx.y, b = blockIdx.z;
  if (ix >= nx) return;
  unsigned y = oy[b] + iy, x = ox[b] + ix;
  while (y >= full_ny) y -= full_ny;
  while (x >= full_nx) x -= full_nx;
  float2* p = psi + (static_cast<std::size_t>(b) * ny + iy) * nx + ix;
  const float2 value = mul(*p, t[static_cast<std::size_t>(y) * full_nx + x]);
  *p = make_float2(value.x * factor, value.y * factor);
}

// Grid (pixel blocks, probes): every probe times the same propagator.
__global__ void propagate_kernel(float2* psi, const float2* propagator, unsigned area) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= area) return;
  float2* p = psi + static_cast<std::size_t>(blockIdx.y) * area + i;
  *p = mul(*p, propagator[i]);
}

// sums[b] += sum_i weight[i] |psi_b[i]|^2; grid (blocks per probe, probes).
__global__ void detect_kernel(const float2* psi, const float* weight, std::size_t area, double* sums) {
  __shared__ double partial[threads_per_block];
  const std::size_t b = blockIdx.y;
  const float2* p = psi + b * area;
  double sum = 0.0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < area;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    sum += static_cast<double>(weight[i]) * (static_cast<double>(p[i].x) * p[i].x + static_cast<double>(p[i].y) * p[i].y);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(sums + b, partial[0]);
}

void launched(const char* what) { check(cudaGetLastError(), what); }

// ---- Fused steps -----------------------------------------------------------

constexpr unsigned fused_columns = 8;           // columns per block of the column kernel
constexpr unsigned fused_column_threads = 256;  // threads per block of the column kernel
constexpr std::size_t fused_max_points = 1024;  // largest window side of the fused steps

__device__ unsigned reverse_bits(unsigned i, unsigned log2n) { return log2n == 0 ? 0 : __brev(i) >> (32 - log2n); }

// Radix-2 FFTs, in place in shared memory, of `lines` lines of n = 2^log2n
// points stored one after the other; tw[k] = exp(-2 pi i k / n), k < n / 2,
// conjugated for the inverse (which is unnormalised).  The block's threads
// share the butterflies; every stage ends with a barrier.
//
// Decimation in time: input in bit-reversed order, output in natural order.
__device__ void fft_dit(float2* a, unsigned log2n, unsigned lines, const float2* tw, bool inverse) {
  const unsigned n = 1u << log2n, butterflies = lines << (log2n - 1);
  for (unsigned log2half = 0; log2half < log2n; ++log2half) {
    const unsigned half = 1u << log2half, step = n >> (log2half + 1);
    for (unsigned j = threadIdx.x; j < butterflies; j += blockDim.x) {
      const unsigned line = j >> (log2n - 1), m = j & ((n >> 1) - 1);
      const unsigned k = m & (half - 1), i0 = (line << log2n) + ((m >> log2half) << (log2half + 1)) + k;
      float2 w = tw[k * step];
      if (inverse) w.y = -w.y;
      const float2 u = a[i0], v = mul(a[i0 + half], w);
      a[i0] = make_float2(u.x + v.x, u.y + v.y);
      a[i0 + half] = make_float2(u.x - v.x, u.y - v.y);
    }
    __syncthreads();
  }
}

// Decimation in frequency: input in natural order, output in bit-reversed order.
__device__ void fft_dif(float2* a, unsigned log2n, unsigned lines, const float2* tw, bool inverse) {
  const unsigned n = 1u << log2n, butterflies = lines << (log2n - 1);
  for (unsigned q = 0; q < log2n; ++q) {
    const unsigned log2half = log2n - 1 - q, half = 1u << log2half, step = n >> (log2half + 1);
    for (unsigned j = threadIdx.x; j < butterflies; j += blockDim.x) {
      const unsigned line = j >> (log2n - 1), m = j & ((n >> 1) - 1);
      const unsigned k = m & (half - 1), i0 = (line << log2n) + ((m >> log2half) << (log2half + 1)) + k;
      float2 w = tw[k * step];
      if (inverse) w.y = -w.y;
      const float2 u = a[i0], v = a[i0 + half];
      a[i0] = make_float2(u.x + v.x, u.y + v.y);
      a[i0 + half] = mul(make_float2(u.x - v.x, u.y - v.y), w);
    }
    __syncthreads();
  }
}

// The row pass of a slice, one block per (row, probe): R diag(t) R^-1 on a
// row held with its x transform, or R diag(t) on a plain row (from_real).
// t is the slice read periodically from the probe's window origin; `scale`
// is the inverse's normalisation (1 / nx, or 1 / (ny nx) after cuFFT's
// unnormalised inverse of a plain row).  Shared memory: nx + nx / 2 points.
__global__ void fused_rows_kernel(float2* psi, const float2* t, const unsigned* oy, const unsigned* ox, unsigned ny,
                                  unsigned log2nx, unsigned full_ny, unsigned full_nx, const float2* twiddles,
                                  bool from_real, float scale) {
  extern __shared__ float2 shared[];
  const unsigned nx = 1u << log2nx, y = blockIdx.x, b = blockIdx.y;
  float2* a = shared;
  float2* tw = shared + nx;
  float2* row = psi + (static_cast<std::size_t>(b) * ny + y) * nx;
  for (unsigned k = threadIdx.x; k < nx / 2; k += blockDim.x) tw[k] = twiddles[k];
  for (unsigned x = threadIdx.x; x < nx; x += blockDim.x) a[from_real ? x : reverse_bits(x, log2nx)] = row[x];
  __syncthreads();
  if (!from_real) fft_dit(a, log2nx, 1, tw, true);
  unsigned ty = oy[b] + y;
  while (ty >= full_ny) ty -= full_ny;
  const float2* t_row = t + static_cast<std::size_t>(ty) * full_nx;
  for (unsigned x = threadIdx.x; x < nx; x += blockDim.x) {
    unsigned tx = ox[b] + x;
    while (tx >= full_nx) tx -= full_nx;
    const float2 v = mul(a[x], t_row[tx]);
    a[x] = make_float2(v.x * scale, v.y * scale);
  }
  __syncthreads();
  fft_dif(a, log2nx, 1, tw, false);
  for (unsigned x = threadIdx.x; x < nx; x += blockDim.x) row[x] = a[reverse_bits(x, log2nx)];
}

// The column pass of a slice, one block of fused_column_threads per
// (fused_columns columns, probe): forward FFT along y, times the propagator,
// sums[d * batch + b] += sum(weight_d |psi_k|^2) for each of the n_weights
// detectors, then, when `back`, the inverse along y with its 1 / ny.
// Shared memory: fused_columns * ny + ny / 2 points.
__global__ void fused_columns_kernel(float2* psi, const float2* propagator, const float* weights, unsigned n_weights,
                                     double* sums, unsigned batch, unsigned log2ny, unsigned nx,
                                     const float2* twiddles, bool back) {
  extern __shared__ float2 shared[];
  __shared__ double partial[fused_column_threads];
  const unsigned ny = 1u << log2ny, x0 = blockIdx.x * fused_columns, b = blockIdx.y;
  const unsigned width = min(fused_columns, nx - x0), points = fused_columns * ny;
  float2* a = shared;
  float2* tw = shared + points;
  float2* wave = psi + static_cast<std::size_t>(b) * ny * nx + x0;
  for (unsigned k = threadIdx.x; k < ny / 2; k += blockDim.x) tw[k] = twiddles[k];
  // Thread i reads column i % fused_columns of row i / fused_columns: neighbouring threads, neighbouring points.
  for (unsigned i = threadIdx.x; i < points; i += blockDim.x) {
    const unsigned c = i % fused_columns, y = i / fused_columns;
    a[c * ny + reverse_bits(y, log2ny)] = c < width ? wave[static_cast<std::size_t>(y) * nx + c] : make_float2(0.f, 0.f);
  }
  __syncthreads();
  fft_dit(a, log2ny, fused_columns, tw, false);
  for (unsigned i = threadIdx.x; i < points; i += blockDim.x) {
    const unsigned c = i % fused_columns, y = i / fused_columns;
    if (c < width) a[c * ny + y] = mul(a[c * ny + y], propagator[static_cast<std::size_t>(y) * nx + x0 + c]);
  }
  __syncthreads();
  for (unsigned d = 0; d < n_weights; ++d) {
    const float* w = weights + static_cast<std::size_t>(d) * ny * nx + x0;
    double sum = 0.0;
    for (unsigned i = threadIdx.x; i < points; i += blockDim.x) {
      const unsigned c = i % fused_columns, y = i / fused_columns;
      if (c >= width) continue;
      const float2 v = a[c * ny + y];
      sum += static_cast<double>(w[static_cast<std::size_t>(y) * nx + c]) *
             (static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(sums + static_cast<std::size_t>(d) * batch + b, partial[0]);
    __syncthreads();
  }
  if (!back) return;
  fft_dif(a, log2ny, fused_columns, tw, true);
  const float scale = 1.0f / static_cast<float>(ny);
  for (unsigned i = threadIdx.x; i < points; i += blockDim.x) {
    const unsigned c = i % fused_columns, y = i / fused_columns;
    if (c >= width) continue;
    const float2 v = a[c * ny + reverse_bits(y, log2ny)];
    wave[static_cast<std::size_t>(y) * nx + c] = make_float2(v.x * scale, v.y * scale);
  }
}

// log2(n) for the fused steps' window sides, or -1 when n is not a power of two in [2, fused_max_points].
int fused_log2(std::size_t n) {
  if (n < 2 || n > fused_max_points || (n & (n - 1)) != 0) return -1;
  int k = 0;
  while ((std::size_t{1} << k) < n) ++k;
  return k;
}

// exp(-2 pi i k / n) for k < n / 2, computed in double.
std::vector<float2> twiddle_table(std::size_t n) {
  std::vector<float2> tw(n / 2);
  for (std::size_t k = 0; k < n / 2; ++k) {
    const double angle = -2.0 * pi * static_cast<double>(k) / static_cast<double>(n);
    tw[k] = make_float2(static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle)));
  }
  return tw;
}

}  // namespace

void run_multislice(const multislice_request& r, const float* potentials, float* out, std::size_t batch,
                    progress_callback progress, void* context, bool potentials_on_device, bool fused) {
  const multislice_setup setup = prepare_multislice(r);
  const transmission_stack& stack = *r.stack;
  const grid2d& full = stack.grid;
  const grid2d& window = setup.window;
  const std::size_t slices = stack.slices(), full_area = full.ny * full.nx, area = window.ny * window.nx;
  const int log2ny = fused_log2(window.ny), log2nx = fused_log2(window.nx);
  if (fused && (log2ny < 0 || log2nx < 0))
    throw std::invalid_argument("multislice: fused steps take windows of 2 to " + std::to_string(fused_max_points) +
                                " points a side, powers of two; this one is " + std::to_string(window.ny) + " x " +
                                std::to_string(window.nx));
  if (r.n_positions == 0) return;
  if (!potentials) throw std::invalid_argument("multislice: potentials missing");
  if (batch == 0) batch = std::max<std::size_t>(1, (std::size_t{1} << 30) / (area * sizeof(float2)));
  batch = std::min({batch, r.n_positions, std::size_t{65535}});  // probes are a grid dimension
  if (full.ny > 0xffffffffu / 2 || full.nx > 0xffffffffu / 2 || window.ny > 65535)
    throw std::invalid_argument("multislice: the CUDA path takes grids of at most 65535 rows");
  const cufft_functions& fft = cufft();

  // Transmission functions of every slice, band-limited on the full grid.
  device_array<float2> transmission(slices * full_area);
  {
    device_array<float> v(potentials_on_device ? 0 : slices * full_area);
    if (!potentials_on_device) v.upload(potentials, slices * full_area);
    const std::size_t n = slices * full_area;
    transmission_kernel<<<blocks_for(n), threads_per_block>>>(potentials_on_device ? potentials : v.get(),
                                                              transmission.get(),
                                                              static_cast<float>(interaction_constant(r.optics.energy)), n);
    launched("transmission_kernel");
  }
  {
    const std::vector<float> aperture = antialias_aperture(full);
    device_array<float> d_aperture(full_area);
    d_aperture.upload(aperture.data(), full_area);
    // One slice at a time keeps the cuFFT work area small for thick stacks.
    const batched_fft plan(fft, full.ny, full.nx, 1);
    for (std::size_t s = 0; s < slices; ++s) {
      float2* t = transmission.get() + s * full_area;
      plan.forward(t);
      scale_kernel<<<blocks_for(full_area), threads_per_block>>>(t, d_aperture.get(),
                                                                  1.0f / static_cast<float>(full_area), full_area,
                                                                  full_area);
      launched("scale_kernel");
      plan.inverse(t);
    }
  }

  // Shared per-window arrays.
  device_array<float2> base(area);
  base.upload(reinterpret_cast<const float2*>(setup.base.data()), area);
  device_array<float2> propagators(setup.propagators.size() * area);
  for (std::size_t p = 0; p < setup.propagators.size(); ++p)
    propagators.upload(reinterpret_cast<const float2*>(setup.propagators[p].data()), area, p * area);
  const std::size_t detectors = r.detectors.size(), planes = r.exit_planes.size();
  device_array<float> weights(detectors * area);
  for (std::size_t d = 0; d < detectors; ++d) weights.upload(setup.weights[d].data(), area, d * area);

  // Per-batch arrays.
  device_array<float2> psi(batch * area);
  device_array<double> d_px(batch), d_py(batch);
  device_array<unsigned> d_oy(batch), d_ox(batch);
  device_array<double> sums(planes * detectors * batch);
  std::vector<double> px(batch), py(batch), host_sums(planes * detectors * batch);
  std::vector<unsigned> oy(batch), ox(batch);
  const batched_fft plan(fft, window.ny, window.nx, batch);
  const std::size_t n = batch * area;
  const float inverse_scale = 1.0f / static_cast<float>(area);
  const unsigned row_threads = window.nx >= 256 ? 256 : 64;
  const dim3 transmit_grid(static_cast<unsigned>((window.nx + row_threads - 1) / row_threads),
                           static_cast<unsigned>(window.ny), static_cast<unsigned>(batch));
  const dim3 propagate_grid(blocks_for(area), static_cast<unsigned>(batch));
  const dim3 detect_grid(static_cast<unsigned>(std::min<std::size_t>(blocks_for(area), 64)),
                         static_cast<unsigned>(batch));
  // The fused steps' launch shapes and twiddles.
  const std::vector<float2> host_tw_x = fused ? twiddle_table(window.nx) : std::vector<float2>{};
  const std::vector<float2> host_tw_y = fused ? twiddle_table(window.ny) : std::vector<float2>{};
  device_array<float2> tw_x(host_tw_x.size()), tw_y(host_tw_y.size());
  tw_x.upload(host_tw_x.data(), host_tw_x.size());
  tw_y.upload(host_tw_y.data(), host_tw_y.size());
  const dim3 rows_grid(static_cast<unsigned>(window.ny), static_cast<unsigned>(batch));
  const unsigned rows_threads = static_cast<unsigned>(std::clamp<std::size_t>(window.nx / 2, 32, 512));
  const std::size_t rows_shared = (window.nx + window.nx / 2) * sizeof(float2);
  const dim3 columns_grid(static_cast<unsigned>((window.nx + fused_columns - 1) / fused_columns),
                          static_cast<unsigned>(batch));
  const std::size_t columns_shared = (fused_columns * window.ny + window.ny / 2) * sizeof(float2);
  if (fused)
    check(cudaFuncSetAttribute(fused_columns_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(columns_shared)),
          "cudaFuncSetAttribute");

  for (std::size_t first = 0; first < r.n_positions; first += batch) {
    const std::size_t count = std::min(batch, r.n_positions - first);
    for (std::size_t b = 0; b < batch; ++b) {
      // A short last batch repeats its last probe; the repeats are not read back.
      const probe_placement place = place_probe(r, setup, first + std::min(b, count - 1));
      const auto wrapped = [](long long o, std::size_t n) {
        const auto m = static_cast<long long>(n);
        return static_cast<unsigned>(((o % m) + m) % m);
      };
      oy[b] = wrapped(place.oy, full.ny);
      ox[b] = wrapped(place.ox, full.nx);
      px[b] = place.px;
      py[b] = place.py;
    }
    d_oy.upload(oy.data(), batch);
    d_ox.upload(ox.data(), batch);
    d_px.upload(px.data(), batch);
    d_py.upload(py.data(), batch);
    check(cudaMemset(sums.get(), 0, sums.size() * sizeof(double)), "cudaMemset");

    probe_kernel<<<blocks_for(n), threads_per_block>>>(base.get(), d_px.get(), d_py.get(), psi.get(), window.ny,
                                                       window.nx, window.dy, window.dx, n);
    launched("probe_kernel");
    plan.inverse(psi.get());
    std::size_t next_plane = 0;
    for (std::size_t s = 0; fused && s < slices; ++s) {
      // The first row pass reads the plain waves of cuFFT's unnormalised inverse.
      fused_rows_kernel<<<rows_grid, rows_threads, rows_shared>>>(
          psi.get(), transmission.get() + s * full_area, d_oy.get(), d_ox.get(), static_cast<unsigned>(window.ny),
          static_cast<unsigned>(log2nx), static_cast<unsigned>(full.ny), static_cast<unsigned>(full.nx), tw_x.get(),
          s == 0, s == 0 ? inverse_scale : 1.0f / static_cast<float>(window.nx));
      launched("fused_rows_kernel");
      const bool read = next_plane < planes && r.exit_planes[next_plane] == s + 1;
      const bool last = read && next_plane + 1 == planes;
      fused_columns_kernel<<<columns_grid, fused_column_threads, columns_shared>>>(
          psi.get(), propagators.get() + setup.propagator_of[s] * area, weights.get(),
          read ? static_cast<unsigned>(detectors) : 0u, sums.get() + next_plane * detectors * batch,
          static_cast<unsigned>(batch), static_cast<unsigned>(log2ny), static_cast<unsigned>(window.nx), tw_y.get(),
          !last);
      launched("fused_columns_kernel");
      if (read) ++next_plane;
      if (last) break;
    }
    for (std::size_t s = 0; !fused && s < slices; ++s) {
      transmit_kernel<<<transmit_grid, row_threads>>>(psi.get(), transmission.get() + s * full_area, d_oy.get(),
                                                      d_ox.get(), static_cast<unsigned>(window.ny),
                                                      static_cast<unsigned>(window.nx), static_cast<unsigned>(full.ny),
                                                      static_cast<unsigned>(full.nx), inverse_scale);
      launched("transmit_kernel");
      plan.forward(psi.get());
      propagate_kernel<<<propagate_grid, threads_per_block>>>(
          psi.get(), propagators.get() + setup.propagator_of[s] * area, static_cast<unsigned>(area));
      launched("propagate_kernel");
      if (next_plane < planes && r.exit_planes[next_plane] == s + 1) {
        for (std::size_t d = 0; d < detectors; ++d) {
          detect_kernel<<<detect_grid, threads_per_block>>>(psi.get(), weights.get() + d * area, area,
                                                            sums.get() + (next_plane * detectors + d) * batch);
          launched("detect_kernel");
        }
        ++next_plane;
      }
      if (next_plane == planes) break;
      plan.inverse(psi.get());
    }
    sums.download(host_sums.data(), host_sums.size());
    for (std::size_t k = 0; k < planes * detectors; ++k)
      for (std::size_t b = 0; b < count; ++b)
        out[k * r.n_positions + first + b] = static_cast<float>(host_sums[k * batch + b]);
    if (progress && !progress(first + count, context)) throw multislice_cancelled();
  }
}

void run_multislice_from_atoms(const multislice_request& r, const potential_request& atoms,
                               const projected_form_factor& form, float* out, std::size_t batch,
                               progress_callback progress, void* context, bool fused) {
  const grid2d& grid = r.stack->grid;
  if (atoms.grid.ny != grid.ny || atoms.grid.nx != grid.nx || atoms.slice_edges.size() != r.stack->slices() + 1)
    throw std::invalid_argument("multislice: the atoms' grid and slices must be the multislice's");
  device_array<float> potentials(r.stack->slices() * grid.ny * grid.nx);
  projected_potentials(atoms, form, potentials.get());
  run_multislice(r, potentials.get(), out, batch, progress, context, true, fused);
}

}  // namespace heteroagg::cuda
