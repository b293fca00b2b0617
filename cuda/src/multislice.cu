// CUDA twin of the multislice in cpp/src/multislice.cpp.
//
// The host side shares prepare_multislice and place_probe with the CPU path;
// the device holds the transmission functions of every slice and a batch of
// probe wave functions, which one batched cuFFT plan transforms at once.
// Per slice and batch: inverse FFT, transmission (with the inverse FFT's
// 1/N folded in), forward FFT, propagator; detectors integrate |psi_k|^2 at
// the exit planes.
//
// With fused steps (power-of-two windows of at most 1024 points a side, and
// there the default: faster than the cuFFT steps on an H100) each
// slice is instead one kernel over rows and one over columns, the twins of
// fft2_plan::rows_pass and fft2_plan::columns_pass: each reads the waves
// once into registers, transforms (through shared memory between the first
// and last FFT passes), multiplies and transforms back, and between slices
// the waves keep only their rows transformed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "heteroagg/multislice.hpp"
#include "heteroagg_cuda/cufft_library.hpp"
#include "heteroagg_cuda/device_memory.hpp"
#include "heteroagg_cuda/multislice.hpp"
#include "heteroagg_cuda/potential.hpp"
#include "batched_fft.hpp"
#include "shared_fft.cuh"

namespace heteroagg::cuda {

namespace {

constexpr double pi = 3.14159265358979323846;
constexpr unsigned threads_per_block = 256;

unsigned blocks_for(std::size_t n) { return static_cast<unsigned>((n + threads_per_block - 1) / threads_per_block); }

using shared_fft::cmul;

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
  psi[i] = cmul(base[pixel], cmul(ramp_y, ramp_x));
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
  const float2 value = cmul(*p, t[static_cast<std::size_t>(y) * full_nx + x]);
  *p = make_float2(value.x * factor, value.y * factor);
}

// Grid (pixel blocks, probes): every probe times the same propagator.
__global__ void propagate_kernel(float2* psi, const float2* propagator, unsigned area) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= area) return;
  float2* p = psi + static_cast<std::size_t>(blockIdx.y) * area + i;
  *p = cmul(*p, propagator[i]);
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

constexpr unsigned fused_column_threads = 512;  // most threads per block of the column kernel
constexpr unsigned fused_row_threads = 256;     // most threads per block of the row kernel
constexpr std::size_t fused_max_points = 1024;  // largest window side of the fused steps

using shared_fft::padded;

// Threads per line of 2^log2n points: each holds 2^outer_bits of them.
__host__ __device__ unsigned fused_log2_threads_per_line(unsigned log2n) {
  return log2n - shared_fft::outer_bits(log2n);
}

// log2 of the rows per block of the row kernel: as many as give it
// fused_row_threads threads, and no more than the window has.
unsigned fused_log2_row_lines(unsigned log2ny, unsigned log2nx) {
  const unsigned per_line = fused_log2_threads_per_line(log2nx);
  return std::min(log2ny, per_line >= 8 ? 0u : 8u - per_line);
}

// log2 of the columns per block of the column kernel: 8 columns up to 512
// points, 4 beyond, so that its two buffers stay near 70 KiB, and enough for
// a whole warp on short columns (its detector sums reduce by warps).
unsigned fused_log2_columns(unsigned log2ny) {
  const unsigned per_line = fused_log2_threads_per_line(log2ny);
  return std::max(log2ny <= 9 ? 3u : 2u, per_line >= 5 ? 0u : 5u - per_line);
}

// Points from one column to the next in the column kernel's buffers: the
// padded column and 8 / columns more (at least one), which keeps the first
// pass's stores free of bank conflicts and the last pass's loads at two ways,
// neighbouring threads being on neighbouring columns.
__host__ __device__ unsigned fused_column_stride(unsigned ny, unsigned log2columns) {
  return padded(ny) + max(1u, 8u >> log2columns);
}

__device__ float2 conj(float2 a) { return make_float2(a.x, -a.y); }

// The row pass of a slice, one block per (lines rows, probe), R points of a
// row per thread: R diag(t) R^-1 on rows held with their x transform, or
// R diag(t) on plain rows (from_real).  t is the slice read periodically from
// the probe's window origin; `scale` is the inverse's normalisation (1 / nx,
// or 1 / (ny nx) after cuFFT's unnormalised inverse of a plain row).  tw: the
// twiddles of shared_fft::forward for nx.  Shared memory: 2 lines padded(nx)
// + nx points.
template <unsigned R>
__global__ void __launch_bounds__(fused_row_threads)
    fused_rows_kernel(float2* psi, const float2* t, const unsigned* oy, const unsigned* ox, unsigned ny,
                      unsigned log2nx, unsigned log2lines, unsigned full_ny, unsigned full_nx,
                      const float2* twiddles, bool from_real, float scale) {
  extern __shared__ float2 shared[];
  const unsigned nx = 1u << log2nx, lines = 1u << log2lines, stride = padded(nx);
  const unsigned log2per_line = fused_log2_threads_per_line(log2nx), per_line = 1u << log2per_line;
  const unsigned line = threadIdx.x >> log2per_line, j = threadIdx.x & (per_line - 1);
  const unsigned y0 = blockIdx.x << log2lines, b = blockIdx.y;
  float2* a = shared;
  float2* spare = shared + lines * stride;
  float2* tw = shared + 2 * lines * stride;
  float2* row = psi + (static_cast<std::size_t>(b) * ny + y0 + line) * nx;
  for (unsigned k = threadIdx.x; k + 1 < nx; k += blockDim.x) tw[k] = twiddles[k];
  float2 v[R];
  // The inverse is conj(FFT(conj(row))): conjugated here and after the transform.
#pragma unroll
  for (unsigned r = 0; r < R; ++r) v[r] = from_real ? row[j + r * per_line] : conj(row[j + r * per_line]);
  __syncthreads();
  if (!from_real) shared_fft::forward<R>(v, line, j, a, spare, log2nx, lines, stride, tw);
  unsigned ty = oy[b] + y0 + line;
  while (ty >= full_ny) ty -= full_ny;
  const float2* slice_row = t + static_cast<std::size_t>(ty) * full_nx;
#pragma unroll
  for (unsigned r = 0; r < R; ++r) {
    unsigned tx = ox[b] + j + r * per_line;
    while (tx >= full_nx) tx -= full_nx;
    const float2 w = cmul(from_real ? v[r] : conj(v[r]), slice_row[tx]);
    v[r] = make_float2(w.x * scale, w.y * scale);
  }
  shared_fft::forward<R>(v, line, j, a, spare, log2nx, lines, stride, tw);
#pragma unroll
  for (unsigned r = 0; r < R; ++r) row[j + r * per_line] = v[r];
}

// Sum of `value` over the block (a whole number of warps, at most
// fused_column_threads threads), valid in thread 0.
__device__ double block_sum(double value, double* partial) {
  for (unsigned offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = 0.0;
  if (warp == 0) {
    value = lane < blockDim.x / 32 ? partial[lane] : 0.0;
    for (unsigned offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  __syncthreads();
  return value;
}

// The column pass of a slice, one block per (2^log2columns columns, probe),
// R points of a column per thread, neighbouring threads on neighbouring
// columns: forward FFT along y, times the propagator,
// sums[d * batch + b] += sum(weight_d |psi_k|^2) for each of the n_weights
// detectors, then, when `back`, the inverse along y with its 1 / ny.
// tw: the twiddles of shared_fft::forward for ny.  Shared memory: 2 columns
// fused_column_stride + ny points.
template <unsigned R>
__global__ void __launch_bounds__(fused_column_threads)
    fused_columns_kernel(float2* psi, const float2* propagator, const float* weights, unsigned n_weights, double* sums,
                         unsigned batch, unsigned log2ny, unsigned nx, const float2* twiddles, bool back,
                         unsigned log2columns) {
  extern __shared__ float2 shared[];
  __shared__ double partial[fused_column_threads / 32];
  const unsigned columns = 1u << log2columns, ny = 1u << log2ny, stride = fused_column_stride(ny, log2columns);
  const unsigned per_line = 1u << fused_log2_threads_per_line(log2ny);
  const unsigned c = threadIdx.x & (columns - 1), j = threadIdx.x >> log2columns;
  const unsigned x0 = blockIdx.x * columns, b = blockIdx.y;
  const bool inside = c < nx - x0;
  float2* a = shared;
  float2* spare = shared + columns * stride;
  float2* tw = shared + 2 * columns * stride;
  float2* wave = psi + static_cast<std::size_t>(b) * ny * nx + x0 + c;
  const float2* k_column = propagator + x0 + c;
  for (unsigned k = threadIdx.x; k + 1 < ny; k += blockDim.x) tw[k] = twiddles[k];
  float2 v[R];
#pragma unroll
  for (unsigned r = 0; r < R; ++r)
    v[r] = inside ? wave[static_cast<std::size_t>(j + r * per_line) * nx] : make_float2(0.f, 0.f);
  __syncthreads();
  shared_fft::forward<R>(v, c, j, a, spare, log2ny, columns, stride, tw);
  // Kept conjugated, ready for the inverse as conj(FFT(conj)); |psi_k|^2 is unchanged.
#pragma unroll
  for (unsigned r = 0; r < R; ++r)
    if (inside) v[r] = conj(cmul(v[r], k_column[static_cast<std::size_t>(j + r * per_line) * nx]));
  for (unsigned d = 0; d < n_weights; ++d) {
    const float* w = weights + static_cast<std::size_t>(d) * ny * nx + x0 + c;
    double sum = 0.0;
#pragma unroll
    for (unsigned r = 0; r < R; ++r)
      if (inside)
        sum += static_cast<double>(w[static_cast<std::size_t>(j + r * per_line) * nx]) *
               (static_cast<double>(v[r].x) * v[r].x + static_cast<double>(v[r].y) * v[r].y);
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) atomicAdd(sums + static_cast<std::size_t>(d) * batch + b, sum);
  }
  if (!back) return;
  shared_fft::forward<R>(v, c, j, a, spare, log2ny, columns, stride, tw);
  const float scale = 1.0f / static_cast<float>(ny);
#pragma unroll
  for (unsigned r = 0; r < R; ++r)
    if (inside) wave[static_cast<std::size_t>(j + r * per_line) * nx] = make_float2(v[r].x * scale, -v[r].y * scale);
}

// log2(n) for the fused steps' window sides, or -1 when n is not a power of two in [2, fused_max_points].
int fused_log2(std::size_t n) {
  if (n < 2 || n > fused_max_points || (n & (n - 1)) != 0) return -1;
  int k = 0;
  while ((std::size_t{1} << k) < n) ++k;
  return k;
}

// The twiddles of shared_fft::forward for 2^log2n points, computed in double:
// for each pass in turn (shared_fft::pass_bits), of radix R after passes whose
// radices multiply to ns, exp(-2 pi i r k / (ns R)) for 0 < r < R (outer) and
// k < ns; n - 1 in all.
std::vector<float2> stockham_twiddles(unsigned log2n) {
  std::vector<float2> tw;
  for (unsigned done = 0; done < log2n;) {
    const unsigned bits = shared_fft::pass_bits(log2n, done);
    const std::size_t radix = std::size_t{1} << bits, ns = std::size_t{1} << done;
    for (std::size_t r = 1; r < radix; ++r)
      for (std::size_t k = 0; k < ns; ++k) {
        const double angle = -2.0 * pi * static_cast<double>(r * k) / static_cast<double>(ns * radix);
        tw.push_back(make_float2(static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))));
      }
    done += bits;
  }
  return tw;
}

using fused_rows_function = void (*)(float2*, const float2*, const unsigned*, const unsigned*, unsigned, unsigned,
                                    unsigned, unsigned, unsigned, const float2*, bool, float);
using fused_columns_function = void (*)(float2*, const float2*, const float*, unsigned, double*, unsigned, unsigned,
                                        unsigned, const float2*, bool, unsigned);

// The kernel of radix 2^outer_bits(log2n) among its three instances.
template <typename Function>
Function for_outer_radix(unsigned log2n, Function radix2, Function radix4, Function radix8) {
  const unsigned bits = shared_fft::outer_bits(log2n);
  return bits == 3 ? radix8 : bits == 2 ? radix4 : radix2;
}

// The fused steps' kernels and launch shapes for a 2^log2ny x 2^log2nx window.
struct fused_launch {
  unsigned log2ny = 0, log2nx = 0, log2lines = 0, log2columns = 0;
  fused_rows_function rows = nullptr;
  fused_columns_function columns = nullptr;
  dim3 rows_grid, columns_grid;
  unsigned rows_threads = 0, columns_threads = 0;
  std::size_t rows_shared = 0, columns_shared = 0;

  fused_launch() = default;
  fused_launch(unsigned log2ny_, unsigned log2nx_, unsigned batch)
      : log2ny(log2ny_),
        log2nx(log2nx_),
        log2lines(fused_log2_row_lines(log2ny_, log2nx_)),
        log2columns(fused_log2_columns(log2ny_)),
        rows(for_outer_radix<fused_rows_function>(log2nx_, fused_rows_kernel<2>, fused_rows_kernel<4>,
                                                  fused_rows_kernel<8>)),
        columns(for_outer_radix<fused_columns_function>(log2ny_, fused_columns_kernel<2>, fused_columns_kernel<4>,
                                                        fused_columns_kernel<8>)) {
    const unsigned ny = 1u << log2ny, nx = 1u << log2nx, lines = 1u << log2lines;
    const unsigned columns_per_block = 1u << log2columns;
    rows_grid = dim3(ny >> log2lines, batch);
    rows_threads = 1u << (log2lines + fused_log2_threads_per_line(log2nx));
    rows_shared = (2 * lines * padded(nx) + nx) * sizeof(float2);
    columns_grid = dim3((nx + columns_per_block - 1) / columns_per_block, batch);
    columns_threads = 1u << (log2columns + fused_log2_threads_per_line(log2ny));
    columns_shared = (2 * columns_per_block * fused_column_stride(ny, log2columns) + ny) * sizeof(float2);
  }

  // Whether both kernels' shared memory (dynamic and static) fits a block of
  // the current device: 227 KiB from compute capability 9.0, 64 KiB at 7.5.
  bool fits_device() const {
    int device = 0, limit = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    cudaFuncAttributes row_kernel{}, column_kernel{};
    check(cudaFuncGetAttributes(&row_kernel, reinterpret_cast<const void*>(rows)), "cudaFuncGetAttributes");
    check(cudaFuncGetAttributes(&column_kernel, reinterpret_cast<const void*>(columns)), "cudaFuncGetAttributes");
    const auto available = static_cast<std::size_t>(limit);
    return rows_shared + row_kernel.sharedSizeBytes <= available &&
           columns_shared + column_kernel.sharedSizeBytes <= available;
  }

  // Let the kernels take their dynamic shared memory beyond the default 48 KiB.
  void reserve_shared_memory() const {
    check(cudaFuncSetAttribute(reinterpret_cast<const void*>(rows), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(rows_shared)),
          "cudaFuncSetAttribute");
    check(cudaFuncSetAttribute(reinterpret_cast<const void*>(columns), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(columns_shared)),
          "cudaFuncSetAttribute");
  }
};

}  // namespace

bool fused_steps_fit(std::size_t ny, std::size_t nx) {
  const int log2ny = fused_log2(ny), log2nx = fused_log2(nx);
  if (log2ny < 0 || log2nx < 0) return false;
  return fused_launch(static_cast<unsigned>(log2ny), static_cast<unsigned>(log2nx), 1).fits_device();
}

void run_multislice(const multislice_request& r, const float* potentials, float* out, std::size_t batch,
                    progress_callback progress, void* context, bool potentials_on_device,
                    std::optional<bool> fused_steps) {
  const multislice_setup setup = prepare_multislice(r);
  const transmission_stack& stack = *r.stack;
  const grid2d& full = stack.grid;
  const grid2d& window = setup.window;
  const std::size_t slices = stack.slices(), full_area = full.ny * full.nx, area = window.ny * window.nx;
  const int log2ny = fused_log2(window.ny), log2nx = fused_log2(window.nx);
  const bool fused = fused_steps.value_or(fused_steps_fit(window.ny, window.nx));
  if (fused && (log2ny < 0 || log2nx < 0))
    throw std::invalid_argument("multislice: fused steps take windows of 2 to " + std::to_string(fused_max_points) +
                                " points a side, powers of two; this one is " + std::to_string(window.ny) + " x " +
                                std::to_string(window.nx));
  if (fused && !fused_steps_fit(window.ny, window.nx))
    throw std::invalid_argument("multislice: the fused steps of a " + std::to_string(window.ny) + " x " +
                                std::to_string(window.nx) +
                                " window need more shared memory per block than this device has; use the "
                                "cuFFT steps (fused = false)");
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
  const std::vector<float2> no_twiddles;
  const std::vector<float2> host_tw_x = fused ? stockham_twiddles(static_cast<unsigned>(log2nx)) : no_twiddles;
  const std::vector<float2> host_tw_y = fused ? stockham_twiddles(static_cast<unsigned>(log2ny)) : no_twiddles;
  device_array<float2> tw_x(host_tw_x.size()), tw_y(host_tw_y.size());
  tw_x.upload(host_tw_x.data(), host_tw_x.size());
  tw_y.upload(host_tw_y.data(), host_tw_y.size());
  const fused_launch launch = fused ? fused_launch(static_cast<unsigned>(log2ny), static_cast<unsigned>(log2nx),
                                                  static_cast<unsigned>(batch))
                                   : fused_launch();
  if (fused) launch.reserve_shared_memory();

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
      launch.rows<<<launch.rows_grid, launch.rows_threads, launch.rows_shared>>>(
          psi.get(), transmission.get() + s * full_area, d_oy.get(), d_ox.get(), static_cast<unsigned>(window.ny),
          launch.log2nx, launch.log2lines, static_cast<unsigned>(full.ny), static_cast<unsigned>(full.nx),
          tw_x.get(), s == 0, s == 0 ? inverse_scale : 1.0f / static_cast<float>(window.nx));
      launched("fused_rows_kernel");
      const bool read = next_plane < planes && r.exit_planes[next_plane] == s + 1;
      const bool last = read && next_plane + 1 == planes;
      launch.columns<<<launch.columns_grid, launch.columns_threads, launch.columns_shared>>>(
          psi.get(), propagators.get() + setup.propagator_of[s] * area, weights.get(),
          read ? static_cast<unsigned>(detectors) : 0u, sums.get() + next_plane * detectors * batch,
          static_cast<unsigned>(batch), launch.log2ny, static_cast<unsigned>(window.nx), tw_y.get(), !last,
          launch.log2columns);
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
                               progress_callback progress, void* context, std::optional<bool> fused) {
  const grid2d& grid = r.stack->grid;
  if (atoms.grid.ny != grid.ny || atoms.grid.nx != grid.nx || atoms.slice_edges.size() != r.stack->slices() + 1)
    throw std::invalid_argument("multislice: the atoms' grid and slices must be the multislice's");
  device_array<float> potentials(r.stack->slices() * grid.ny * grid.nx);
  projected_potentials(atoms, form, potentials.get());
  run_multislice(r, potentials.get(), out, batch, progress, context, true, fused);
}

}  // namespace heteroagg::cuda
