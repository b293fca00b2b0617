#include "heteroagg/potential.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include "heteroagg/fft.hpp"
#include "parallel.hpp"

namespace heteroagg {

std::vector<std::size_t> slice_of_atoms(const slice_atoms& atoms, const std::vector<double>& edges) {
  if (edges.size() < 2) throw std::invalid_argument("potential: at least one slice is needed");
  for (std::size_t j = 1; j < edges.size(); ++j)
    if (!(edges[j] > edges[j - 1])) throw std::invalid_argument("potential: slice edges must increase strictly");
  const std::size_t slices = edges.size() - 1;
  std::vector<std::size_t> out(atoms.n);
  for (std::size_t a = 0; a < atoms.n; ++a) {
    const double z = atoms.positions[3 * a + 2];
    // An atom on an inner edge belongs to the slice above it (abTEM's rule).
    std::size_t s = 0;
    while (s + 1 < slices && z >= edges[s + 1] - 1e-12) ++s;
    out[a] = s;
  }
  return out;
}

namespace {

// Adds atom a to `grid` as a bilinear delta of the given weight (periodic wrap).
void deposit_bilinear(const potential_request& r, std::size_t a, complex64* grid, complex64 weight) {
  const grid2d& g = r.grid;
  const double px = (r.atoms.positions[3 * a] - r.x0) / g.dx;
  const double py = (r.atoms.positions[3 * a + 1] - r.y0) / g.dy;
  const double fx = std::floor(px), fy = std::floor(py);
  const double tx = px - fx, ty = py - fy;
  const double nx = static_cast<double>(g.nx), ny = static_cast<double>(g.ny);
  const auto x0 = static_cast<std::size_t>(fx - nx * std::floor(fx / nx));
  const auto y0 = static_cast<std::size_t>(fy - ny * std::floor(fy / ny));
  const std::size_t x1 = (x0 + 1) % g.nx, y1 = (y0 + 1) % g.ny;
  grid[y0 * g.nx + x0] += weight * static_cast<float>((1.0 - tx) * (1.0 - ty));
  grid[y0 * g.nx + x1] += weight * static_cast<float>(tx * (1.0 - ty));
  grid[y1 * g.nx + x0] += weight * static_cast<float>((1.0 - tx) * ty);
  grid[y1 * g.nx + x1] += weight * static_cast<float>(tx * ty);
}

}  // namespace

std::vector<std::map<int, std::vector<std::size_t>>> atoms_by_slice(const potential_request& r) {
  const grid2d& g = r.grid;
  check_grid(g, "potential");
  if (!std::isfinite(r.x0) || !std::isfinite(r.y0)) throw std::invalid_argument("potential: the origin must be finite");
  for (std::size_t a = 0; a < 3 * r.atoms.n; ++a)
    if (!std::isfinite(r.atoms.positions[a])) throw std::invalid_argument("potential: atom positions must be finite");
  // The periodic wrap of the deposits is exact in double precision only for
  // pixel coordinates well below 2^53.
  constexpr double max_pixels = 0x1p50;
  for (std::size_t a = 0; a < r.atoms.n; ++a)
    if (!(std::fabs((r.atoms.positions[3 * a] - r.x0) / g.dx) < max_pixels &&
          std::fabs((r.atoms.positions[3 * a + 1] - r.y0) / g.dy) < max_pixels))
      throw std::invalid_argument("potential: atom positions must lie within 2^50 pixels of the origin");
  const std::vector<std::size_t> slice = slice_of_atoms(r.atoms, r.slice_edges);
  std::vector<std::map<int, std::vector<std::size_t>>> groups(r.slice_edges.size() - 1);
  for (std::size_t a = 0; a < r.atoms.n; ++a) groups[slice[a]][r.atoms.numbers[a]].push_back(a);
  return groups;
}

namespace {

bool cancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

}  // namespace

std::map<int, std::vector<float>> element_factor_tables(const potential_request& r, const projected_form_factor& form,
                                                        const std::atomic<bool>* cancel) {
  // Rows are shared out among the threads.
  const grid2d& g = r.grid;
  const std::size_t area = g.ny * g.nx;
  const unsigned threads = detail::resolve_threads(r.threads);
  std::map<int, std::vector<float>> factor;
  for (std::size_t a = 0; a < r.atoms.n; ++a) factor.emplace(r.atoms.numbers[a], std::vector<float>());
  const double pixel_area = g.dx * g.dy;
  for (auto& [z, f] : factor) {
    f.resize(area);
    const int element = z;
    std::vector<float>& table = f;
    detail::parallel_for(g.ny, threads, [&](std::size_t iy, unsigned) {
      if (cancelled(cancel)) throw potential_cancelled();
      const double ky = fft_frequency(iy, g.ny, g.dy);
      for (std::size_t ix = 0; ix < g.nx; ++ix) {
        const double kx = fft_frequency(ix, g.nx, g.dx);
        double correction = 1.0;
        if (r.pixel_correction && (ix != 0 || iy != 0)) {
          // abTEM divides by sin(q)/q with q = |k d| in cycles per pixel
          const double q = std::hypot(kx * g.dx, ky * g.dy);
          correction = std::sin(q) / q;
        }
        table[iy * g.nx + ix] = static_cast<float>(form(element, kx * kx + ky * ky) / (correction * pixel_area));
      }
    });
  }
  return factor;
}

std::vector<float> projected_potentials(const potential_request& r, const projected_form_factor& form,
                                        const std::atomic<bool>* cancel) {
  const grid2d& g = r.grid;
  const std::vector<std::map<int, std::vector<std::size_t>>> groups = atoms_by_slice(r);
  const std::size_t slices = r.slice_edges.size() - 1, area = g.ny * g.nx;
  const unsigned threads = detail::resolve_threads(r.threads);
  const std::map<int, std::vector<float>> factor = element_factor_tables(r, form, cancel);

  std::vector<float> out(slices * area, 0.0f);
  const fft2_plan plan(g.ny, g.nx);
  std::vector<std::vector<complex64>> deltas(threads), sums(threads);
  detail::parallel_for(slices, threads, [&](std::size_t s, unsigned worker) {
    if (cancelled(cancel)) throw potential_cancelled();
    if (groups[s].empty()) return;
    std::vector<complex64>& delta = deltas[worker];
    std::vector<complex64>& sum = sums[worker];
    delta.resize(area);
    sum.assign(area, complex64(0.0f, 0.0f));
    // Two elements share one complex FFT: one's deltas are the real part,
    // the other's the imaginary part.  Both maps are real, so their
    // transforms separate as A(k) = (Z(k) + conj Z(-k)) / 2 and
    // B(k) = (Z(k) - conj Z(-k)) / 2i.
    const auto& elements = groups[s];
    for (auto it = elements.begin(); it != elements.end();) {
      const auto first = it++;
      const auto second = it != elements.end() ? it++ : elements.end();
      std::fill(delta.begin(), delta.end(), complex64(0.0f, 0.0f));
      for (const std::size_t a : first->second) deposit_bilinear(r, a, delta.data(), 1.0f);
      if (second != elements.end())
        for (const std::size_t a : second->second) deposit_bilinear(r, a, delta.data(), complex64(0.0f, 1.0f));
      plan.forward(delta.data());
      const float* fa = factor.at(first->first).data();
      if (second == elements.end()) {
        for (std::size_t i = 0; i < area; ++i) sum[i] += delta[i] * fa[i];
        continue;
      }
      const float* fb = factor.at(second->first).data();
      for (std::size_t iy = 0; iy < g.ny; ++iy) {
        const std::size_t my = (g.ny - iy) % g.ny;
        for (std::size_t ix = 0; ix < g.nx; ++ix) {
          const std::size_t i = iy * g.nx + ix, j = my * g.nx + (g.nx - ix) % g.nx;
          const complex64 z = delta[i], zc = std::conj(delta[j]);
          const complex64 a = 0.5f * (z + zc), b = complex64(0.0f, -0.5f) * (z - zc);
          sum[i] += a * fa[i] + b * fb[i];
        }
      }
    }
    plan.inverse(sum.data());
    float* v = out.data() + s * area;
    for (std::size_t i = 0; i < area; ++i) v[i] = sum[i].real();
  });
  return out;
}

}  // namespace heteroagg
