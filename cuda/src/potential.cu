// CUDA twin of the projected potentials (cpp/src/potential.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <vector>

#include "batched_fft.hpp"
#include "heteroagg/fft.hpp"
#include "heteroagg_cuda/device_memory.hpp"
#include "heteroagg_cuda/potential.hpp"

namespace heteroagg::cuda {

namespace {

constexpr unsigned threads_per_block = 256;

unsigned blocks_for(std::size_t n) { return static_cast<unsigned>((n + threads_per_block - 1) / threads_per_block); }

// Atom k (lateral position in Å, slice index) as a bilinear delta of unit
// weight on its slice's grid, wrapped periodically: the same arithmetic as
// the host's deposit_bilinear.
__global__ void deposit_kernel(const double2* xy, const unsigned* slice, std::size_t atoms, float2* delta,
                               unsigned ny, unsigned nx, double x0, double y0, double dx, double dy) {
  const std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (k >= atoms) return;
  const double px = (xy[k].x - x0) / dx, py = (xy[k].y - y0) / dy;
  const double fx = floor(px), fy = floor(py);
  const double tx = px - fx, ty = py - fy;
  const double gx = static_cast<double>(nx), gy = static_cast<double>(ny);
  const auto ix0 = static_cast<unsigned>(fx - gx * floor(fx / gx));
  const auto iy0 = static_cast<unsigned>(fy - gy * floor(fy / gy));
  const unsigned ix1 = (ix0 + 1) % nx, iy1 = (iy0 + 1) % ny;
  float* grid = reinterpret_cast<float*>(delta + static_cast<std::size_t>(slice[k]) * ny * nx);
  atomicAdd(grid + 2 * (static_cast<std::size_t>(iy0) * nx + ix0), static_cast<float>((1.0 - tx) * (1.0 - ty)));
  atomicAdd(grid + 2 * (static_cast<std::size_t>(iy0) * nx + ix1), static_cast<float>(tx * (1.0 - ty)));
  atomicAdd(grid + 2 * (static_cast<std::size_t>(iy1) * nx + ix0), static_cast<float>((1.0 - tx) * ty));
  atomicAdd(grid + 2 * (static_cast<std::size_t>(iy1) * nx + ix1), static_cast<float>(tx * ty));
}

// sum += delta * factor; grid (pixel blocks, slices).
__global__ void accumulate_kernel(float2* sum, const float2* delta, const float* factor, unsigned area) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= area) return;
  const std::size_t j = static_cast<std::size_t>(blockIdx.y) * area + i;
  const float f = factor[i];
  sum[j] = make_float2(sum[j].x + delta[j].x * f, sum[j].y + delta[j].y * f);
}

// out = Re(sum) / area (the inverse FFT's normalisation).
__global__ void real_part_kernel(const float2* sum, float* out, float scale, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = sum[i].x * scale;
}

}  // namespace

void projected_potentials(const potential_request& r, const projected_form_factor& form, float* out,
                          bool out_on_device) {
  if (!out_on_device) {
    const std::size_t size = (r.slice_edges.size() > 1 ? r.slice_edges.size() - 1 : 0) * r.grid.ny * r.grid.nx;
    device_array<float> buffer(size);
    projected_potentials(r, form, buffer.get(), true);
    buffer.download(out, size);
    return;
  }
  const std::vector<std::map<int, std::vector<std::size_t>>> groups = atoms_by_slice(r);
  const grid2d& g = r.grid;
  if (g.ny > 65535 || g.nx > 65535) throw std::invalid_argument("potential: the CUDA path takes grids of at most 65535 rows");
  const std::size_t slices = groups.size(), area = g.ny * g.nx;
  check(cudaMemset(out, 0, slices * area * sizeof(float)), "cudaMemset");
  if (r.atoms.n == 0) return;
  const std::map<int, std::vector<float>> factors = element_factor_tables(r, form);
  const cufft_functions& fft = cufft();

  // Slices go in batches that keep the two complex stacks under about 1 GiB.
  const std::size_t per_batch = std::clamp<std::size_t>((std::size_t{1} << 29) / (area * sizeof(float2)), 1, 65535);
  const std::size_t batch = std::min(per_batch, slices);
  device_array<float2> delta(batch * area), sum(batch * area);
  device_array<float> factor(area);
  const batched_fft plan(fft, g.ny, g.nx, batch);
  const float scale = 1.0f / static_cast<float>(area);

  for (std::size_t first = 0; first < slices; first += batch) {
    const std::size_t count = std::min(batch, slices - first);
    check(cudaMemset(sum.get(), 0, batch * area * sizeof(float2)), "cudaMemset");
    for (const auto& [element, table] : factors) {
      std::vector<double2> xy;
      std::vector<unsigned> slice;
      for (std::size_t s = first; s < first + count; ++s) {
        const auto found = groups[s].find(element);
        if (found == groups[s].end()) continue;
        for (const std::size_t a : found->second) {
          xy.push_back(make_double2(r.atoms.positions[3 * a], r.atoms.positions[3 * a + 1]));
          slice.push_back(static_cast<unsigned>(s - first));
        }
      }
      if (xy.empty()) continue;
      device_array<double2> d_xy(xy.size());
      device_array<unsigned> d_slice(slice.size());
      d_xy.upload(xy.data(), xy.size());
      d_slice.upload(slice.data(), slice.size());
      factor.upload(table.data(), area);
      check(cudaMemset(delta.get(), 0, batch * area * sizeof(float2)), "cudaMemset");
      deposit_kernel<<<blocks_for(xy.size()), threads_per_block>>>(
          d_xy.get(), d_slice.get(), xy.size(), delta.get(), static_cast<unsigned>(g.ny), static_cast<unsigned>(g.nx),
          r.x0, r.y0, g.dx, g.dy);
      check(cudaGetLastError(), "deposit_kernel");
      plan.forward(delta.get());
      accumulate_kernel<<<dim3(blocks_for(area), static_cast<unsigned>(count)), threads_per_block>>>(
          sum.get(), delta.get(), factor.get(), static_cast<unsigned>(area));
      check(cudaGetLastError(), "accumulate_kernel");
    }
    plan.inverse(sum.get());
    real_part_kernel<<<blocks_for(count * area), threads_per_block>>>(sum.get(), out + first * area, scale,
                                                                      count * area);
    check(cudaGetLastError(), "real_part_kernel");
  }
  check(cudaDeviceSynchronize(), "projected_potentials");
}

}  // namespace heteroagg::cuda
