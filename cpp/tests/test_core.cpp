// Plain C++ tests of the core library (no Python involved).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "heteroagg/aggregate.hpp"
#include "heteroagg/descriptors.hpp"
#include "heteroagg/rng.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures;
  }
}

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

void test_eigenvalues() {
  const auto ev = heteroagg::symmetric_eigenvalues(2, 1, 0, 2, 0, 5);
  check(std::fabs(ev[0] - 1) < 1e-12 && std::fabs(ev[1] - 3) < 1e-12 && std::fabs(ev[2] - 5) < 1e-12,
        "eigenvalues of a known symmetric matrix");
}

}  // namespace

int main() {
  test_philox_known_answers();
  test_sampler_geometry();
  test_descriptors_against_brute_force();
  test_validation();
  test_eigenvalues();
  if (failures) {
    std::printf("%d failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("all C++ core tests passed\n");
  return EXIT_SUCCESS;
}
