// Sphere fill of rotated crystals; see crystal.hpp for the conventions.
#include "heteroagg/crystal.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "heteroagg/grid.hpp"
#include "heteroagg/rng.hpp"

namespace heteroagg {
namespace {

// Stream ids of the per-sphere draws ("CRYR", "CRYO"), apart from the sampler's.
constexpr std::uint64_t rotation_stream = 0x43525952ull;
constexpr std::uint64_t offset_stream = 0x4352594Full;

bool finite(vec3 v) { return std::isfinite(v.x) && std::isfinite(v.y) && std::isfinite(v.z); }

// Call visit(x, number) for every atom x = sum_k (n_k + f_k + s_k) a_k of the
// crystal with |x| < radius, in the crystal's own frame.  For each basis atom
// the lattice rows along a_2 are bounded in n_0 and n_1 by the extent of the
// ball along the reciprocal vectors, and each row is cut to the ball exactly
// by solving a quadratic, so only rows that reach the ball are visited.
template <class Visit>
void for_each_atom_in_ball(const unit_cell& cell, double radius, vec3 offset, Visit&& visit) {
  const vec3 a0 = cell.lattice[0], a1 = cell.lattice[1], a2 = cell.lattice[2];
  const double volume = std::fabs(dot(a0, cross(a1, a2)));
  const double reach0 = radius * norm(cross(a1, a2)) / volume;  // radius * |b_0|
  const double reach1 = radius * norm(cross(a2, a0)) / volume;  // radius * |b_1|
  const double r2 = radius * radius, a2a2 = norm2(a2);
  // Index bounds are widened by one: the exact test below decides.
  auto lower = [](double t) { return static_cast<long long>(std::ceil(t)) - 1; };
  auto upper = [](double t) { return static_cast<long long>(std::floor(t)) + 1; };
  for (std::size_t m = 0; m < cell.basis.size(); ++m) {
    const vec3 s = cell.basis[m] + offset;
    const std::uint8_t number = cell.numbers[m];
    const long long hi0 = upper(reach0 - s.x), hi1 = upper(reach1 - s.y);
    for (long long n0 = lower(-reach0 - s.x); n0 <= hi0; ++n0)
      for (long long n1 = lower(-reach1 - s.y); n1 <= hi1; ++n1) {
        const vec3 p = (static_cast<double>(n0) + s.x) * a0 + (static_cast<double>(n1) + s.y) * a1 +
                       s.z * a2;
        // |p + t a2|^2 < r^2  <=>  a2a2 t^2 + 2 b t + c < 0
        const double b = dot(p, a2), c = norm2(p) - r2;
        const double disc = b * b - a2a2 * c;
        if (disc < 0.0) continue;
        const double root = std::sqrt(disc);
        const long long hi2 = upper((-b + root) / a2a2);
        for (long long n2 = lower((-b - root) / a2a2); n2 <= hi2; ++n2) {
          const vec3 x = p + static_cast<double>(n2) * a2;
          if (norm2(x) < r2) visit(x, number);
        }
      }
  }
}

// Run task(i) for i in [0, n) on up to `threads` workers (0 = hardware);
// rethrows the first exception after all workers have stopped.
template <class Task>
void parallel_for(std::size_t n, int threads, Task&& task) {
  unsigned workers = threads > 0 ? static_cast<unsigned>(threads) : std::thread::hardware_concurrency();
  workers = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(workers, n)));
  if (workers <= 1) {
    for (std::size_t i = 0; i < n; ++i) task(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&]() {
    try {
      for (std::size_t i = next++; i < n; i = next++) task(i);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = n;
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (unsigned t = 0; t < workers; ++t) pool.emplace_back(work);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

void validate(const unit_cell& cell) {
  const auto& a = cell.lattice;
  if (!finite(a[0]) || !finite(a[1]) || !finite(a[2]))
    throw std::invalid_argument("unit cell: lattice vectors must be finite");
  const double volume = std::fabs(dot(a[0], cross(a[1], a[2])));
  if (!(volume > 1e-6 * norm(a[0]) * norm(a[1]) * norm(a[2])))
    throw std::invalid_argument("unit cell: lattice vectors are degenerate (zero volume)");
  if (cell.basis.empty()) throw std::invalid_argument("unit cell: the basis is empty");
  if (cell.basis.size() != cell.numbers.size())
    throw std::invalid_argument("unit cell: basis and atomic numbers differ in length");
  for (std::size_t m = 0; m < cell.basis.size(); ++m) {
    if (!finite(cell.basis[m]))
      throw std::invalid_argument("unit cell: fractional positions must be finite");
    if (cell.numbers[m] < 1 || cell.numbers[m] > 118)
      throw std::invalid_argument("unit cell: atomic numbers must be in 1..118");
  }
}

std::size_t fill_sphere(const unit_cell& cell, vec3 centre, double radius, const mat3& rotation,
                        vec3 offset, atom_arrays& out, std::uint32_t particle) {
  validate(cell);
  if (!(radius > 0.0) || !std::isfinite(radius))
    throw std::invalid_argument("fill_sphere: radius must be positive and finite");
  if (!finite(centre) || !finite(offset))
    throw std::invalid_argument("fill_sphere: centre and offset must be finite");
  for (const double v : rotation.m)
    if (!std::isfinite(v)) throw std::invalid_argument("fill_sphere: the rotation must be finite");
  const std::size_t before = out.size();
  for_each_atom_in_ball(cell, radius, offset, [&](vec3 x, std::uint8_t number) {
    const vec3 p = centre + rotation * x;
    out.positions.insert(out.positions.end(), {p.x, p.y, p.z});
    out.numbers.push_back(number);
    out.particles.push_back(particle);
  });
  return out.size() - before;
}

sphere_frame sphere_orientation(std::uint64_t seed, std::uint64_t index, const fill_options& options) {
  const std::uint64_t item_seed = derive_seed(seed, index);
  sphere_frame frame;
  if (options.rotate) {
    philox_stream rng(item_seed, rotation_stream);
    frame.rotation = random_rotation(rng);
  }
  if (options.random_offset) {
    philox_stream rng(item_seed, offset_stream);
    const double u0 = rng.uniform(), u1 = rng.uniform(), u2 = rng.uniform();
    frame.offset = {u0, u1, u2};
  }
  return frame;
}

atom_arrays fill_aggregate(const std::vector<unit_cell>& cells, const double* centres,
                           const double* radii, const std::uint32_t* structure, std::size_t n,
                           std::uint64_t seed, const fill_options& options) {
  if (cells.empty()) throw std::invalid_argument("fill_aggregate: no unit cells given");
  for (const auto& cell : cells) validate(cell);
  if (n > std::size_t{0xFFFFFFFFu}) throw std::length_error("fill_aggregate: too many spheres");
  auto centre = [&](std::size_t i) { return vec3{centres[3 * i], centres[3 * i + 1], centres[3 * i + 2]}; };
  double r_max = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!finite(centre(i))) throw std::invalid_argument("fill_aggregate: centres must be finite");
    if (!(radii[i] > 0.0) || !std::isfinite(radii[i]))
      throw std::invalid_argument("fill_aggregate: radii must be positive and finite");
    if (structure[i] >= cells.size())
      throw std::invalid_argument("fill_aggregate: structure index " + std::to_string(structure[i]) +
                                  " of sphere " + std::to_string(i) + " has no unit cell");
    r_max = std::max(r_max, radii[i]);
  }

  // Earlier spheres overlapping each sphere, as a compressed list: two spheres
  // overlap when their centres are closer than r_i + r_j <= 2 r_max, which the
  // cell list answers with cells a little wider than 2 r_max.
  std::vector<std::uint32_t> first(n + 1, 0), earlier;
  if (options.drop_overlaps && n > 1) {
    const cell_list grid(n, 2.0 * r_max * (1.0 + 1e-9), centre);
    for (std::size_t i = 0; i < n; ++i) {
      const vec3 ci = centre(i);
      grid.for_each_near(ci, [&](std::uint32_t j) {
        const double reach = radii[i] + radii[j];
        if (j < i && norm2(centre(j) - ci) < reach * reach) earlier.push_back(j);
        return true;
      });
      first[i + 1] = static_cast<std::uint32_t>(earlier.size());
    }
  }

  std::vector<sphere_frame> frames(n);
  for (std::size_t i = 0; i < n; ++i) frames[i] = sphere_orientation(seed, i, options);

  // Visit the kept atoms of sphere i in the aggregate frame.
  auto for_each_kept = [&](std::size_t i, auto&& visit) {
    const vec3 ci = centre(i);
    const mat3& rotation = frames[i].rotation;
    const std::uint32_t* others = earlier.data() + first[i];
    const std::uint32_t n_others = first[i + 1] - first[i];
    for_each_atom_in_ball(cells[structure[i]], radii[i], frames[i].offset, [&](vec3 x, std::uint8_t z) {
      const vec3 p = ci + rotation * x;
      for (std::uint32_t k = 0; k < n_others; ++k) {
        const std::uint32_t j = others[k];
        if (norm2(p - centre(j)) < radii[j] * radii[j]) return;
      }
      visit(p, z);
    });
  };

  // Count, then write each sphere straight into its slice of the output, so
  // memory peaks at the size of the result and the order is the sphere order.
  std::vector<std::size_t> start(n + 1, 0);
  parallel_for(n, options.threads, [&](std::size_t i) {
    std::size_t count = 0;
    for_each_kept(i, [&](vec3, std::uint8_t) { ++count; });
    start[i + 1] = count;
  });
  for (std::size_t i = 0; i < n; ++i) start[i + 1] += start[i];

  atom_arrays out;
  out.positions.resize(3 * start[n]);
  out.numbers.resize(start[n]);
  out.particles.resize(start[n]);
  parallel_for(n, options.threads, [&](std::size_t i) {
    std::size_t k = start[i];
    for_each_kept(i, [&](vec3 p, std::uint8_t z) {
      out.positions[3 * k] = p.x;
      out.positions[3 * k + 1] = p.y;
      out.positions[3 * k + 2] = p.z;
      out.numbers[k] = z;
      out.particles[k] = static_cast<std::uint32_t>(i);
      ++k;
    });
  });
  return out;
}

}  // namespace heteroagg
