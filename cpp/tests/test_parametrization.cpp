// Plain C++ tests of the atomic potential parametrisations.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "heteroagg/parametrization.hpp"

namespace {

using heteroagg::atomic_potential;
using heteroagg::parametrization;

using heteroagg_test::check;

double rel_diff(double a, double b) { return std::abs(a - b) / std::abs(b); }

constexpr double pi = 3.141592653589793;
constexpr double bohr = 0.52917721067;  // Å, CODATA 2014

template <class F>
bool throws_invalid_argument(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void test_bessel_against_std() {
  double worst = 0.0;
  for (double x = 1e-8; x < 700.0; x *= 1.01) {
    const auto k = heteroagg::bessel_k0_k1(x);
    worst = std::max(worst, rel_diff(k.k0, std::cyl_bessel_k(0.0, x)));
    worst = std::max(worst, rel_diff(k.k1, std::cyl_bessel_k(1.0, x)));
  }
  check(worst < 1e-14, "K0/K1 agree with std::cyl_bessel_k, worst " + std::to_string(worst));
  check(std::isinf(heteroagg::bessel_k0_k1(0.0).k0), "K0(0) = inf");
  check(std::isnan(heteroagg::bessel_k0_k1(-1.0).k1), "K1(-1) = NaN");
}

void test_names() {
  check(heteroagg::atomic_number("H") == 1 && heteroagg::atomic_number("W") == 74 &&
            heteroagg::atomic_number("Lr") == 103,
        "atomic numbers");
  check(heteroagg::element_symbol(22) == "Ti", "symbol of Z = 22");
  check(throws_invalid_argument([] { heteroagg::atomic_number("Xx"); }), "unknown symbol throws");
  check(throws_invalid_argument([] { heteroagg::element_symbol(0); }), "Z = 0 throws");
  check(throws_invalid_argument([] { atomic_potential(parametrization::lobato, 104); }),
        "Z = 104 throws");
  check(heteroagg::parametrization_from_name("Kirkland") == parametrization::kirkland,
        "name lookup ignores case");
  check(throws_invalid_argument([] { heteroagg::parametrization_from_name("peng"); }),
        "unknown parametrization throws");
}

void test_prefactor() {
  // h²/(2π m_e e) = 2π a_0² E_h/e, E_h = 27.21138602 eV (CODATA 2014).
  const double expected = 2.0 * pi * bohr * bohr * 27.21138602;
  check(rel_diff(heteroagg::potential_prefactor, expected) < 1e-9, "prefactor h²/(2π m e)");
}

// Hydrogen 1s: f_e(k) = a0 (2 + x) / (2 (1 + x)²), x = (π a0 k)², and
// V(r) = (e/4πε0)(1/r + 1/a0) exp(-2r/a0).
void test_hydrogen() {
  const double e_over_4pi_eps0 = 27.21138602 * bohr;  // V·Å
  for (auto kind : {parametrization::lobato, parametrization::kirkland}) {
    const atomic_potential h(kind, 1);
    const double tol = kind == parametrization::lobato ? 0.01 : 0.03;
    for (double k = 0.0; k < 6.0; k += 0.05) {
      const double x = pi * pi * bohr * bohr * k * k;
      const double exact = 0.5 * bohr * (2.0 + x) / ((1.0 + x) * (1.0 + x));
      check(rel_diff(h.scattering_factor(k), exact) < tol,
            "hydrogen f_e(" + std::to_string(k) + ")");
    }
    for (double r = 0.05; r < 2.0; r += 0.05) {
      const double exact = e_over_4pi_eps0 * (1.0 / r + 1.0 / bohr) * std::exp(-2.0 * r / bohr);
      check(rel_diff(h.potential(r), exact) < 3 * tol, "hydrogen V(" + std::to_string(r) + ")");
    }
  }
}

// ∫ V(sqrt(r² + z²)) dz by the trapezoidal rule in z = r sinh(t).
double integrate_along_z(const atomic_potential& atom, double r) {
  const double h = 1e-3;
  double sum = 0.5 * atom.potential(r) * r;
  for (int j = 1; j < 12000; ++j) {
    const double t = h * j;
    const double z = r * std::sinh(t);
    sum += atom.potential(std::sqrt(r * r + z * z)) * r * std::cosh(t);
  }
  return 2.0 * h * sum;
}

void test_projection_and_fourier() {
  for (auto kind : {parametrization::lobato, parametrization::kirkland}) {
    for (int z : {1, 8, 22, 74, 92}) {
      const atomic_potential atom(kind, z);
      for (double r : {0.01, 0.1, 0.5, 1.0, 2.5}) {
        check(rel_diff(atom.projected_potential(r), integrate_along_z(atom, r)) < 1e-9,
              "projection of V, Z = " + std::to_string(z) + ", r = " + std::to_string(r));
      }
      check(std::isinf(atom.potential(0.0)) && std::isinf(atom.projected_potential(0.0)),
            "singular at r = 0");
      for (double k : {0.0, 0.3, 2.0, 10.0}) {
        check(rel_diff(atom.projected_potential_fourier(k),
                       heteroagg::potential_prefactor * atom.scattering_factor(k)) < 1e-15,
              "F(k) = C f_e(k)");
      }
      // Mott-Bethe: f_e(k) -> Z / (2π² a0 k²) far out.
      const double k = 200.0;
      check(rel_diff(atom.scattering_factor(k), z / (2.0 * pi * pi * bohr * k * k)) < 0.05,
            "large-k limit, Z = " + std::to_string(z));
    }
  }
}

void test_arrays() {
  const std::vector<double> r{0.1, 0.2, 0.3};
  std::vector<double> out(r.size());
  heteroagg::projected_potential(parametrization::kirkland, 74, r.data(), out.data(), r.size());
  const atomic_potential w(parametrization::kirkland, 74);
  for (std::size_t i = 0; i < r.size(); ++i)
    check(out[i] == w.projected_potential(r[i]), "array form equals scalar form");
}

}  // namespace

int main() {
  test_bessel_against_std();
  test_names();
  test_prefactor();
  test_hydrogen();
  test_projection_and_fourier();
  test_arrays();
  return heteroagg_test::finish("parametrization");
}
