// Plain C++ tests of the core library (no Python involved).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <string>
#include <vector>

#include "check.hpp"
#include "contact_screen.hpp"
#include "heteroagg/aggregate.hpp"
#include "heteroagg/descriptors.hpp"
#include "heteroagg/grid.hpp"
#include "heteroagg/rng.hpp"

namespace {

using heteroagg_test::check;

void test_philox_known_answers() {
  using heteroagg::philox_block;
  const auto a = heteroagg::philox4x32_10(philox_block{{0, 0, 0, 0}}, 0, 0);
  check(a.v[0] == 0x6627e8d5u && a.v[1] == 0xe169c58du && a.v[2] == 0xbc57ac4cu &&
            a.v[3] == 0x9b00dbd8u,
        "philox4x32-10 zero vector");
  const auto b = heteroagg::philox4x32_10(
      philox_block{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  check(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u &&
            b.v[3] == 0x6d5451fdu,
        "philox4x32-10 all-ones vector");
  const auto c = heteroagg::philox4x32_10(
      philox_block{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  check(c.v[0] == 0xd16cfe09u && c.v[1] == 0x94fdccebu && c.v[2] == 0x5001e420u &&
            c.v[3] == 0x24126ea1u,
        "philox4x32-10 pi vector");
}

// Brute-force check of the sampler's geometric guarantees.
void test_sampler_geometry() {
  heteroagg::model_params p;
  p.n_particles = 120;
  p.overlap = 0.1;
  p.segregation = 0.5;
  const auto agg = heteroagg::sample_aggregate(p, 42);
  check(agg.size() == 120, "sampler returns n_particles spheres");
  const std::size_t n = agg.size();
  std::vector<int> parent(n);
  for (std::size_t i = 0; i < n; ++i) parent[i] = static_cast<int>(i);
  std::function<int(int)> find = [&](int x) { return parent[x] == x ? x : parent[x] = find(parent[x]); };
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double dx = agg.centers[3 * i] - agg.centers[3 * j];
      const double dy = agg.centers[3 * i + 1] - agg.centers[3 * j + 1];
      const double dz = agg.centers[3 * i + 2] - agg.centers[3 * j + 2];
      const double d = std::sqrt(dx * dx + dy * dy + dz * dz);
      const double c = (1.0 - p.overlap) * (agg.radii[i] + agg.radii[j]);
      worst = std::max(worst, (c - d) / c);
      if (d <= c * (1.0 + 1e-6)) parent[find(static_cast<int>(i))] = find(static_cast<int>(j));
    }
  check(worst < 1e-6, "no pair overlaps beyond the allowed neck overlap");
  int roots = 0;
  for (std::size_t i = 0; i < n; ++i) roots += find(static_cast<int>(i)) == static_cast<int>(i);
  check(roots == 1, "the exact-contact graph is connected");

  const auto again = heteroagg::sample_aggregate(p, 42);
  check(again.centers == agg.centers && again.radii == agg.radii, "same seed, same aggregate");
}

void test_descriptors_against_brute_force() {
  heteroagg::model_params p;
  p.n_particles = 200;
  p.frac_w = 0.4;
  const auto agg = heteroagg::sample_aggregate(p, 7);
  const auto d = heteroagg::compute_descriptors(agg.centers.data(), agg.radii.data(),
                                                agg.materials.data(), agg.size(), 1e-3);
  long contacts = 0, hetero = 0;
  for (std::size_t i = 0; i < agg.size(); ++i)
    for (std::size_t j = i + 1; j < agg.size(); ++j) {
      double d2 = 0;
      for (int k = 0; k < 3; ++k) d2 += std::pow(agg.centers[3 * i + k] - agg.centers[3 * j + k], 2);
      const double reach = (agg.radii[i] + agg.radii[j]) * 1.001;
      if (d2 <= reach * reach) {
        ++contacts;
        hetero += agg.materials[i] != agg.materials[j];
      }
    }
  check(d.n_contacts == contacts, "contact count equals the brute-force count");
  check(d.n_hetero_contacts == hetero, "hetero contact count equals the brute-force count");
  check(d.n_components == 1, "sampled aggregate is one connected component");
}

// Radii over two orders (a tenth of the spheres 12 times the rest's size, a
// hundredth 200 times), so that the search splits off giants twice; some pairs
// touch exactly.  The contacts match a brute-force double-precision count pair
// for pair, at every tolerance.
void test_descriptors_with_giants_against_brute_force() {
  heteroagg::philox_stream rng(31, 0);
  const std::size_t n = 3000;
  std::vector<double> xyz(3 * n), radii(n, 1.0);
  for (double& v : xyz) v = 24.0 * rng.uniform();
  for (std::size_t i = 0; i < n; ++i) {
    const double u = rng.uniform();
    radii[i] = u < 0.01 ? 200.0 : u < 0.1 ? 12.0 : 0.5 + rng.uniform();
  }
  radii[0] = 200.0;  // a giant touching a small sphere and another giant exactly
  radii[1] = 0.75;
  radii[2] = 12.0;
  for (int k = 0; k < 3; ++k) {
    xyz[3 + k] = xyz[k] + (k == 0 ? radii[0] + radii[1] : 0.0);
    xyz[6 + k] = xyz[k] + (k == 1 ? radii[0] + radii[2] : 0.0);
  }
  const std::vector<std::uint8_t> materials(n, 0);
  bool all = true;
  for (const double tol : {0.0, 1e-3, 0.2}) {
    const auto d = heteroagg::compute_descriptors(xyz.data(), radii.data(), materials.data(), n, tol);
    std::set<std::pair<std::int64_t, std::int64_t>> found, expected;
    for (std::size_t p = 0; p < d.contacts.size(); p += 2) found.emplace(d.contacts[p], d.contacts[p + 1]);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j) {
        const double dx = xyz[3 * i] - xyz[3 * j], dy = xyz[3 * i + 1] - xyz[3 * j + 1],
                     dz = xyz[3 * i + 2] - xyz[3 * j + 2];
        const double reach = (radii[i] + radii[j]) * (1.0 + tol);
        if (dx * dx + dy * dy + dz * dz <= reach * reach) expected.emplace(i, j);
      }
    all &= found == expected && found.size() * 2 == d.contacts.size() && expected.count({0, 1}) &&
           expected.count({0, 2});
  }
  check(all, "contacts of spheres over several orders of size equal the brute-force pairs");
}

// Every point within reach of a query point along the grid's two axes lies
// in one of the runs for_each_run_near offers.
void test_column_grid_runs_near_a_point() {
  heteroagg::philox_stream rng(37, 0);
  const std::size_t n = 2000;
  std::vector<double> xyz(3 * n);
  for (std::size_t k = 0; k < n; ++k) {
    xyz[3 * k] = 40.0 * rng.uniform();
    xyz[3 * k + 1] = 20.0 * rng.uniform();
    xyz[3 * k + 2] = 5.0 * rng.uniform();
  }
  const heteroagg::column_grid grid(xyz.data(), n, 1.0);
  bool all = true;
  std::size_t inside = 0;
  for (int q = 0; q < 200; ++q) {
    const heteroagg::vec3 p{50.0 * rng.uniform() - 5.0, 30.0 * rng.uniform() - 5.0, 5.0 * rng.uniform()};
    const double reach = 8.0 * rng.uniform();
    std::vector<bool> offered(n, false);
    grid.for_each_run_near(p, reach, [&](std::uint32_t first, std::uint32_t last) {
      for (std::uint32_t k = first; k < last; ++k) offered[grid.order()[k]] = true;
    });
    for (std::size_t k = 0; k < n; ++k)
      if (std::fabs(xyz[3 * k] - p.x) <= reach && std::fabs(xyz[3 * k + 1] - p.y) <= reach) {
        all &= offered[k];
        ++inside;
      }
  }
  check(all && inside > 1000, "column_grid offers every point within reach of a query point");
}

// cell_list::for_each_near visits every point less than one cell from the
// query, each once, reported by the id it was given.
void test_cell_list_reports_ids_of_near_points() {
  heteroagg::philox_stream rng(41, 0);
  const std::size_t n = 3000;
  const double cell = 0.7;
  std::vector<heteroagg::vec3> points(n);
  std::vector<std::uint32_t> ids(n);
  for (std::size_t k = 0; k < n; ++k) {
    points[k] = {30.0 * rng.uniform() - 15.0, 20.0 * rng.uniform() - 10.0, 4.0 * rng.uniform()};
    ids[k] = static_cast<std::uint32_t>(7 * k + 3);
  }
  const heteroagg::cell_list grid(n, cell, [&](std::size_t k) { return points[k]; }, ids.data());
  bool all = true, once = true;
  std::size_t inside = 0;
  for (int q = 0; q < 2000; ++q) {
    const heteroagg::vec3 p{40.0 * rng.uniform() - 20.0, 30.0 * rng.uniform() - 15.0, 6.0 * rng.uniform() - 1.0};
    std::map<std::uint32_t, int> seen;
    grid.for_each_near(p, [&](std::uint32_t id) {
      ++seen[id];
      return true;
    });
    for (const auto& [id, count] : seen) once &= count == 1 && id % 7 == 3;
    for (std::size_t k = 0; k < n; ++k)
      if (norm(points[k] - p) < cell * (1.0 - 1e-9)) {
        all &= seen.count(ids[k]) == 1;
        ++inside;
      }
  }
  check(all && once && grid.size() == n && inside > 1000,
        "cell_list visits every point within a cell, each once, by its id");
}

// A dimer of touching spheres of radius r has R_g^2 = (1 + 3/5) r^2 at any
// scale: the volume moments neither underflow nor overflow.
void test_descriptors_at_extreme_scales() {
  bool all = true;
  for (const double r : {1e-300, 1e-200, 1e-150, 1e-70, 1.0, 1e25}) {
    const double xyz[6] = {0.0, 0.0, 0.0, 2.0 * r, 0.0, 0.0}, radii[2] = {r, r};
    const std::uint8_t materials[2] = {0, 1};
    const auto d = heteroagg::compute_descriptors(xyz, radii, materials, 2, 1e-3);
    all &= std::fabs(d.radius_of_gyration / r - std::sqrt(1.6)) < 1e-12 && d.n_contacts == 1;
    if (r > 1e-100)  // below, the volume itself is smaller than any double
      all &= std::fabs(d.total_volume / (r * r * r) - 8.0 * 3.141592653589793 / 3.0) < 1e-12;
  }
  check(all, "descriptors of a dimer at scales from 1e-300 to 1e25 nm");
  const double far[6] = {0.0, 0.0, 0.0, 1e10, 0.0, 0.0}, tiny[2] = {1e-30, 1e-30};
  const std::uint8_t materials[2] = {0, 1};
  bool threw = false;
  try {
    heteroagg::compute_descriptors(far, tiny, materials, 2, 1e-3);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "an aggregate 1e40 diameters wide is refused, not miscounted");
}

void test_validation() {
  heteroagg::model_params p;
  p.fractal_dim = 3.0;
  bool threw = false;
  try {
    heteroagg::validate(p);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("fractal_dim") != std::string::npos;
  }
  check(threw, "fractal_dim = 3 is rejected naming the field");
}

void test_cancellation() {
  heteroagg::model_params p;
  std::atomic<bool> cancel{true};
  bool single = false, batch = false;
  try {
    heteroagg::sample_aggregate(p, 1, {}, &cancel);
  } catch (const heteroagg::sampling_cancelled&) {
    single = true;
  }
  try {
    heteroagg::sample_aggregates({p, p, p}, {1, 2, 3}, 2, {}, &cancel);
  } catch (const heteroagg::sampling_cancelled&) {
    batch = true;
  }
  check(single && batch, "a set cancel flag stops sampling with sampling_cancelled");
  cancel = false;
  const auto a = heteroagg::sample_aggregate(p, 1, {}, &cancel);
  const auto b = heteroagg::sample_aggregate(p, 1);
  check(a.centers == b.centers, "an unset cancel flag changes nothing");
}

// Every pair closer than h must be offered by column_grid exactly once, for
// point sets from dense to sparse enough that the grid coarsens.
void test_column_grid_offers_each_close_pair_once() {
  const double h = 1.0;
  for (double box : {0.5, 3.0, 20.0, 1e6}) {
    heteroagg::philox_stream rng(17, static_cast<std::uint64_t>(box));
    const std::size_t n = 400;
    std::vector<double> xyz(3 * n);
    for (double& v : xyz) v = box * rng.uniform();
    // a few guaranteed close pairs in the sparse sets
    for (std::size_t k = 0; k < 20; ++k)
      for (int a = 0; a < 3; ++a) xyz[3 * (2 * k + 1) + a] = xyz[3 * (2 * k) + a] + 0.3 * (a == 0);
    const heteroagg::column_grid grid(xyz.data(), n, h);
    const std::uint32_t* order = grid.order();
    std::map<std::pair<std::uint32_t, std::uint32_t>, int> offered;
    for (std::uint32_t k = 0; k < n; ++k) {
      const auto runs = grid.runs_of(k);
      auto offer = [&](std::uint32_t l) {
        offered[{std::min(order[k], order[l]), std::max(order[k], order[l])}] += 1;
      };
      for (std::uint32_t l = k + 1; l < runs.ahead; ++l) offer(l);
      for (std::uint32_t l = runs.next_first; l < runs.next_last; ++l) offer(l);
    }
    bool once = true;
    std::size_t close = 0;
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = i + 1; j < n; ++j) {
        double d2 = 0.0;
        for (int a = 0; a < 3; ++a) d2 += (xyz[3 * i + a] - xyz[3 * j + a]) * (xyz[3 * i + a] - xyz[3 * j + a]);
        const auto it = offered.find({i, j});
        if (d2 <= h * h) {
          ++close;
          once &= it != offered.end() && it->second == 1;
        } else {
          once &= it == offered.end() || it->second == 1;
        }
      }
    check(close >= 20 && once, "column_grid offers every close pair exactly once (box " + std::to_string(box) + ")");
  }
}

// Points exactly h apart along the strip axis, off a corner that makes (x - lo) / h
// round to either side of a strip boundary: the pair is still offered.
void test_column_grid_offers_pairs_exactly_h_apart() {
  const double lo = 0.04867009046229054, h = 2.0;
  bool all = true;
  for (int shift = 0; shift < 64; ++shift) {
    const double a = lo + h * shift;
    const std::vector<double> xyz = {lo, 0.0, 0.0, a + 32.0, 0.0, 0.0, a + 34.0, 0.0, 0.0};
    const heteroagg::column_grid grid(xyz.data(), 3, h);
    bool offered = false;
    for (std::uint32_t k = 0; k < 3; ++k) {
      const auto runs = grid.runs_of(k);
      auto pair = [&](std::uint32_t l) {
        const std::uint32_t i = grid.order()[k], j = grid.order()[l];
        offered |= std::min(i, j) == 1 && std::max(i, j) == 2;
      };
      for (std::uint32_t l = k + 1; l < runs.ahead; ++l) pair(l);
      for (std::uint32_t l = runs.next_first; l < runs.next_last; ++l) pair(l);
    }
    all &= offered;
  }
  check(all, "column_grid offers pairs exactly h apart across strip boundaries");
}

// Both screening kernels against brute force in double precision: every
// offered pair clearly within reach is flagged, none clearly beyond it is,
// and nothing outside the offered runs is.
void test_screen_kernels_against_brute_force() {
  using namespace heteroagg::detail;
  std::vector<std::pair<const char*, screen_kernel>> kernels = {{"baseline", &screen_candidates_baseline}};
  if (avx2_screen_kernel()) kernels.emplace_back("avx2", avx2_screen_kernel());
  heteroagg::philox_stream rng(23, 0);
  const std::size_t n = 600;
  std::vector<double> xyz(3 * n);
  for (double& v : xyz) v = 6.0 * rng.uniform();
  std::vector<float> radius(n + screen_padding, 0.0f), x(n + screen_padding, 0.0f),
      y(n + screen_padding, 0.0f), z(n + screen_padding, 0.0f);
  const heteroagg::column_grid grid(xyz.data(), n, 1.0);
  std::vector<candidate_runs> runs(n);
  std::size_t capacity = 0;
  for (std::uint32_t k = 0; k < n; ++k) {
    const std::uint32_t i = grid.order()[k];
    x[k] = static_cast<float>(xyz[3 * i]);
    y[k] = static_cast<float>(xyz[3 * i + 1]);
    z[k] = static_cast<float>(xyz[3 * i + 2]);
    radius[k] = static_cast<float>(0.1 + 0.4 * rng.uniform());
    const auto r = grid.runs_of(k);
    runs[k] = {r.ahead, r.next_first, r.next_last};
    capacity += screen_capacity(k, runs[k]);
  }
  const screen_points points{x.data(), y.data(), z.data(), radius.data()};
  for (const auto& [name, kernel] : kernels) {
    // a buffer that is too small at first, so the screen has to resume
    std::vector<flagged_block> out(capacity);
    std::size_t flagged = 0, room = 40, stops = 0;
    for (std::uint32_t k = 0; k < n; ++stops) {
      const screen_progress done = kernel(points, k, n, runs.data(), out.data() + flagged, room);
      flagged += done.written;
      k = done.next_point;
      room = std::min<std::size_t>(2 * room, capacity - flagged);
    }
    check(stops > 1, std::string("screen kernel ") + name + " stops for room and resumes");
    std::vector<std::vector<bool>> hit(n, std::vector<bool>(n, false));
    for (std::size_t f = 0; f < flagged; ++f)
      for (std::uint32_t t = 0; t < screen_block; ++t)
        if (out[f].hits >> t & 1u) hit[out[f].k][out[f].b + t] = true;
    bool ok = true;
    for (std::uint32_t k = 0; k < n; ++k)
      for (std::uint32_t l = 0; l < n; ++l) {
        const bool offered = (l > k && l < runs[k].ahead) || (l >= runs[k].next_first && l < runs[k].next_last);
        const double dx = double{x[k]} - x[l], dy = double{y[k]} - y[l], dz = double{z[k]} - z[l];
        const double d = std::sqrt(dx * dx + dy * dy + dz * dz), reach = double{radius[k]} + radius[l];
        if (!offered) ok &= !hit[k][l];
        else if (d < reach * (1 - 1e-6)) ok &= hit[k][l];
        else if (d > reach * (1 + 1e-6)) ok &= !hit[k][l];
      }
    check(ok && flagged > 0, std::string("screen kernel ") + name + " matches brute force");
  }
}

void test_eigenvalues() {
  const auto ev = heteroagg::symmetric_eigenvalues(2, 1, 0, 2, 0, 5);
  check(std::fabs(ev[0] - 1) < 1e-12 && std::fabs(ev[1] - 3) < 1e-12 && std::fabs(ev[2] - 5) < 1e-12,
        "eigenvalues of a known symmetric matrix");
  // two equal eigenvalues, turned off the axes: they stay equal to rounding (the closed
  // form of the cubic kept about 1e-8)
  const double c = std::cos(0.7), s = std::sin(0.7), u = std::cos(0.3), v = std::sin(0.3);
  const double r[3][3] = {{c * u, -s, c * v}, {s * u, c, s * v}, {-v, 0.0, u}};
  const double diag[3] = {7.0361872, 7.0361872, 0.25};
  double m[3][3] = {};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) m[i][j] += r[i][k] * diag[k] * r[j][k];
  const auto equal = heteroagg::symmetric_eigenvalues(m[0][0], m[0][1], m[0][2], m[1][1], m[1][2], m[2][2]);
  for (const double scale : {1e-160, 1e160}) {
    const auto scaled = heteroagg::symmetric_eigenvalues(2 * scale, scale, 0, 2 * scale, 0, 5 * scale);
    check(std::fabs(scaled[0] / scale - 1) < 1e-12 && std::fabs(scaled[1] / scale - 3) < 1e-12 &&
              std::fabs(scaled[2] / scale - 5) < 1e-12,
          "eigenvalues of a matrix scaled by " + std::to_string(scale));
  }
  check(std::fabs(equal[0] - 0.25) < 1e-14 && std::fabs(equal[1] - 7.0361872) < 1e-14 &&
            std::fabs(equal[2] - 7.0361872) < 1e-14,
        "equal eigenvalues stay equal to rounding");
}

}  // namespace

int main() {
  test_philox_known_answers();
  test_sampler_geometry();
  test_descriptors_against_brute_force();
  test_descriptors_with_giants_against_brute_force();
  test_column_grid_runs_near_a_point();
  test_cell_list_reports_ids_of_near_points();
  test_descriptors_at_extreme_scales();
  test_validation();
  test_cancellation();
  test_column_grid_offers_each_close_pair_once();
  test_column_grid_offers_pairs_exactly_h_apart();
  test_screen_kernels_against_brute_force();
  test_eigenvalues();
  return heteroagg_test::finish("C++ core");
}
