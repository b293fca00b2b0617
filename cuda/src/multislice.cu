// CUDA twin of the multislice in cpp/src/multislice.cpp.
//
// The host side shares prepare_multislice and place_probe with the CPU path;
// the device holds the transmission functions of every slice and a batch of
// probe wave functions, which one batched cuFFT plan transforms at once.
// Per slice and batch: inverse FFT, transmission (with the inverse FFT's
// 1/N folded in), forward FFT, propagator; detectors integrate |psi_k|^2 at
// the exit planes.
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

}  // namespace

void run_multislice(const multislice_request& r, const float* potentials, float* out, std::size_t batch,
                    progress_callback progress, void* context, bool potentials_on_device) {
  const multislice_setup setup = prepare_multislice(r);
  const transmission_stack& stack = *r.stack;
  const grid2d& full = stack.grid;
  const grid2d& window = setup.window;
  const std::size_t slices = stack.slices(), full_area = full.ny * full.nx, area = window.ny * window.nx;
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
    for (std::size_t s = 0; s < slices; ++s) {
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
                               progress_callback progress, void* context) {
  const grid2d& grid = r.stack->grid;
  if (atoms.grid.ny != grid.ny || atoms.grid.nx != grid.nx || atoms.slice_edges.size() != r.stack->slices() + 1)
    throw std::invalid_argument("multislice: the atoms' grid and slices must be the multislice's");
  device_array<float> potentials(r.stack->slices() * grid.ny * grid.nx);
  projected_potentials(atoms, form, potentials.get());
  run_multislice(r, potentials.get(), out, batch, progress, context, true);
}

}  // namespace heteroagg::cuda
