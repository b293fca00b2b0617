// Plain C++ tests of the sphere fill (no Python involved).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "heteroagg/crystal.hpp"

namespace {

using heteroagg::atom_arrays;
using heteroagg::mat3;
using heteroagg::unit_cell;
using heteroagg::vec3;

using heteroagg_test::check;

// A rutile-like tetragonal cell with a two-species basis (not a real crystal:
// any basis serves to test the geometry).
unit_cell test_cell() {
  unit_cell cell;
  cell.lattice = {vec3{4.6, 0.0, 0.0}, vec3{0.3, 4.5, 0.0}, vec3{0.2, -0.4, 2.96}};
  cell.basis = {vec3{0.0, 0.0, 0.0}, vec3{0.5, 0.5, 0.5}, vec3{0.3, 0.3, 0.0}, vec3{0.7, 0.7, 0.0}};
  cell.numbers = {22, 22, 8, 8};
  return cell;
}

mat3 some_rotation() {
  return heteroagg::axis_angle_rotation(heteroagg::normalized(vec3{0.3, -0.5, 0.8}), 1.1);
}

using point = std::array<double, 4>;  // x, y, z, atomic number

std::vector<point> sorted_points(const atom_arrays& a) {
  std::vector<point> p(a.size());
  for (std::size_t k = 0; k < a.size(); ++k)
    p[k] = {a.positions[3 * k], a.positions[3 * k + 1], a.positions[3 * k + 2],
            static_cast<double>(a.numbers[k])};
  std::sort(p.begin(), p.end());
  return p;
}

// Every lattice point in a generous box, kept if inside the sphere.
std::vector<point> brute_force(const unit_cell& cell, vec3 centre, double radius, const mat3& r,
                               vec3 offset) {
  std::vector<point> out;
  const int span = 2 + static_cast<int>(radius / 2.5);
  for (int i = -span; i <= span; ++i)
    for (int j = -span; j <= span; ++j)
      for (int k = -span; k <= span; ++k)
        for (std::size_t m = 0; m < cell.basis.size(); ++m) {
          const vec3 f = cell.basis[m] + offset;
          const vec3 x = (i + f.x) * cell.lattice[0] + (j + f.y) * cell.lattice[1] + (k + f.z) * cell.lattice[2];
          if (heteroagg::norm2(x) < radius * radius) {
            const vec3 p = centre + r * x;
            out.push_back({p.x, p.y, p.z, static_cast<double>(cell.numbers[m])});
          }
        }
  std::sort(out.begin(), out.end());
  return out;
}

bool same_points(const std::vector<point>& a, const std::vector<point>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (int c = 0; c < 4; ++c)
      if (std::fabs(a[k][c] - b[k][c]) > 1e-9) return false;
  return true;
}

void test_fill_sphere_matches_brute_force() {
  const unit_cell cell = test_cell();
  const vec3 centre{1.5, -2.0, 0.25};
  const vec3 offset{0.13, 0.77, 0.41};
  for (double radius : {3.1, 7.7, 12.05}) {
    atom_arrays a;
    const std::size_t n = heteroagg::fill_sphere(cell, centre, radius, some_rotation(), offset, a, 7);
    check(n == a.size() && n > 0, "fill_sphere reports what it appends");
    check(same_points(sorted_points(a), brute_force(cell, centre, radius, some_rotation(), offset)),
          "fill_sphere equals brute force at r=" + std::to_string(radius));
    check(std::all_of(a.particles.begin(), a.particles.end(), [](auto p) { return p == 7; }),
          "fill_sphere tags atoms with the particle index");
  }
}

void test_atom_count_matches_density() {
  const unit_cell cell = test_cell();
  const double volume = std::fabs(heteroagg::dot(cell.lattice[0], heteroagg::cross(cell.lattice[1], cell.lattice[2])));
  const double radius = 40.0;
  atom_arrays a;
  heteroagg::fill_sphere(cell, {}, radius, some_rotation(), {}, a);
  const double expected = 4.0 / 3.0 * 3.141592653589793 * radius * radius * radius * 4.0 / volume;
  check(std::fabs(a.size() / expected - 1.0) < 0.01, "atom count matches density x volume");
}

void test_orientation() {
  heteroagg::fill_options options;
  options.random_offset = true;
  const auto f1 = heteroagg::sphere_orientation(42, 3, options);
  const auto f2 = heteroagg::sphere_orientation(42, 3, options);
  const auto f3 = heteroagg::sphere_orientation(42, 4, options);
  check(f1.rotation.m == f2.rotation.m && f1.offset.x == f2.offset.x, "orientation is a pure function");
  check(f1.rotation.m != f3.rotation.m, "orientations differ between spheres");
  const auto& m = f1.rotation.m;
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  check(std::fabs(det - 1.0) < 1e-12, "orientation is a proper rotation");
  check(f1.offset.x >= 0 && f1.offset.x < 1 && f1.offset.z >= 0 && f1.offset.z < 1, "offset in [0, 1)");
  heteroagg::fill_options plain;
  plain.rotate = false;
  const auto f4 = heteroagg::sphere_orientation(42, 3, plain);
  check(f4.rotation.m == mat3{}.m && f4.offset.x == 0.0, "identity frame without rotation or offset");
}

void test_aggregate_overlap_and_threads() {
  const std::vector<unit_cell> cells = {test_cell()};
  const std::vector<double> centres = {0, 0, 0, 14, 0, 0, 0, 30, 0};  // spheres 0 and 1 overlap
  const std::vector<double> radii = {8, 8, 6};
  const std::vector<std::uint32_t> structure = {0, 0, 0};
  heteroagg::fill_options options;
  options.threads = 1;
  const atom_arrays one = heteroagg::fill_aggregate(cells, centres.data(), radii.data(), structure.data(), 3, 9, options);
  options.threads = 3;
  const atom_arrays three = heteroagg::fill_aggregate(cells, centres.data(), radii.data(), structure.data(), 3, 9, options);
  check(one.positions == three.positions && one.numbers == three.numbers && one.particles == three.particles,
        "thread count does not change the output");
  check(std::is_sorted(one.particles.begin(), one.particles.end()), "atoms come out in sphere order");
  std::size_t inside_earlier = 0, of_sphere1 = 0;
  for (std::size_t k = 0; k < one.size(); ++k) {
    if (one.particles[k] != 1) continue;
    ++of_sphere1;
    const double dx = one.positions[3 * k];
    const double dy = one.positions[3 * k + 1], dz = one.positions[3 * k + 2];
    if (dx * dx + dy * dy + dz * dz < 64.0) ++inside_earlier;
  }
  check(of_sphere1 > 0 && inside_earlier == 0, "no atom of sphere 1 inside sphere 0");
  options.drop_overlaps = false;
  const atom_arrays kept = heteroagg::fill_aggregate(cells, centres.data(), radii.data(), structure.data(), 3, 9, options);
  check(kept.size() > one.size(), "without the overlap rule the neck holds atoms of both spheres");
  const auto f = heteroagg::sphere_orientation(9, 1, options);
  atom_arrays single;
  heteroagg::fill_sphere(cells[0], {14, 0, 0}, 8, f.rotation, f.offset, single, 1);
  std::size_t k0 = 0;
  while (kept.particles[k0] != 1) ++k0;
  check(std::equal(single.positions.begin(), single.positions.end(), kept.positions.begin() + 3 * k0),
        "fill_aggregate sphere equals fill_sphere in the same frame");
}

template <class F>
bool throws(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void test_bad_input() {
  unit_cell flat = test_cell();
  flat.lattice[2] = flat.lattice[0];
  atom_arrays a;
  check(throws([&] { heteroagg::fill_sphere(flat, {}, 5, mat3{}, {}, a); }), "degenerate cell rejected");
  unit_cell empty = test_cell();
  empty.basis.clear();
  empty.numbers.clear();
  check(throws([&] { heteroagg::fill_sphere(empty, {}, 5, mat3{}, {}, a); }), "empty basis rejected");
  check(throws([&] { heteroagg::fill_sphere(test_cell(), {}, -1, mat3{}, {}, a); }), "negative radius rejected");
  const std::vector<unit_cell> cells = {test_cell()};
  const double centre[3] = {0, 0, 0}, radius[1] = {5};
  const std::uint32_t bad_structure[1] = {1};
  check(throws([&] { heteroagg::fill_aggregate(cells, centre, radius, bad_structure, 1, 0); }),
        "unknown structure index rejected");
}

}  // namespace

int main() {
  test_fill_sphere_matches_brute_force();
  test_atom_count_matches_density();
  test_orientation();
  test_aggregate_overlap_and_threads();
  test_bad_input();
  return heteroagg_test::finish("crystal");
}
