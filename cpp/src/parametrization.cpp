#include "heteroagg/parametrization.hpp"

#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace heteroagg {

namespace {

#include "parametrization_tables.inc"

static_assert(element_symbols.size() == static_cast<std::size_t>(max_atomic_number));

constexpr double pi = 3.141592653589793;
constexpr double euler_gamma = 0.5772156649015329;
constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

void check_atomic_number(int z) {
  if (z < 1 || z > max_atomic_number)
    throw std::invalid_argument("atomic number " + std::to_string(z) + " is outside 1.." +
                                std::to_string(max_atomic_number));
}

// K0 and K1 for 0 < x < 2 from their power series in y = x²/4:
//   K0 = -(ln(x/2) + γ) I0 + Σ_k H_k y^k / (k!)²,
//   K1 = 1/x + ln(x/2) I1 - (x/4) Σ_k (ψ(k+1) + ψ(k+2)) y^k / (k! (k+1)!),
// I0 = Σ y^k/(k!)², I1 = (x/2) Σ y^k/(k!(k+1)!), ψ(k+1) = H_k - γ.
bessel_k01 bessel_k01_series(double x) {
  const double y = 0.25 * x * x;
  const double log_half_x = std::log(0.5 * x);
  double t0 = 1.0, t1 = 1.0;  // y^k/(k!)², y^k/(k!(k+1)!)
  double harmonic = 0.0;      // H_k
  double i0 = 1.0, i1 = 1.0;
  double s0 = 0.0;                          // Σ H_k t0
  double s1 = 1.0 - 2.0 * euler_gamma;      // Σ (ψ(k+1) + ψ(k+2)) t1, k = 0 term
  for (int k = 1; k < 40; ++k) {
    const double dk = k;
    t0 *= y / (dk * dk);
    t1 *= y / (dk * (dk + 1.0));
    harmonic += 1.0 / dk;
    i0 += t0;
    i1 += t1;
    s0 += harmonic * t0;
    s1 += (2.0 * (harmonic - euler_gamma) + 1.0 / (dk + 1.0)) * t1;
    if (t0 < 1e-17 * i0) break;
  }
  return {-(log_half_x + euler_gamma) * i0 + s0, 1.0 / x + log_half_x * 0.5 * x * i1 - 0.25 * x * s1};
}

// K0 and K1 for x >= 2.  With u = sqrt(2x) sinh(t/2) the integrals
// K_n(x) = ∫_0^∞ exp(-x cosh t) cosh(n t) dt become
//   K0(x) = 2 e^{-x} ∫_0^∞ e^{-u²} / sqrt(2x + u²) du,
//   K1(x) = 2 e^{-x} ∫_0^∞ e^{-u²} (1 + u²/x) / sqrt(2x + u²) du,
// whose integrands are analytic in a strip of half-width sqrt(2x) >= 2, so
// the trapezoidal rule with step 0.3 on [0, 6] is accurate to ~1e-16.
constexpr int quadrature_nodes = 21;
constexpr double quadrature_step = 0.3;

struct quadrature_rule {
  std::array<double, quadrature_nodes> u2{};
  std::array<double, quadrature_nodes> weight{};
  quadrature_rule() {
    for (int j = 0; j < quadrature_nodes; ++j) {
      const double u = quadrature_step * j;
      u2[j] = u * u;
      weight[j] = 2.0 * quadrature_step * std::exp(-u * u) * (j == 0 ? 0.5 : 1.0);
    }
  }
};

bessel_k01 bessel_k01_quadrature(double x) {
  static const quadrature_rule rule;
  double s0 = 0.0, s1 = 0.0;
  const double two_x = 2.0 * x, inv_x = 1.0 / x;
  for (int j = 0; j < quadrature_nodes; ++j) {
    const double w = rule.weight[j] / std::sqrt(two_x + rule.u2[j]);
    s0 += w;
    s1 += w * (1.0 + rule.u2[j] * inv_x);
  }
  const double e = std::exp(-x);
  return {e * s0, e * s1};
}

}  // namespace

bessel_k01 bessel_k0_k1(double x) {
  if (!(x >= 0.0)) return {not_a_number, not_a_number};
  if (x == 0.0) return {infinity, infinity};
  return x < 2.0 ? bessel_k01_series(x) : bessel_k01_quadrature(x);
}

parametrization parametrization_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "lobato") return parametrization::lobato;
  if (lower == "kirkland") return parametrization::kirkland;
  throw std::invalid_argument("unknown parametrization '" + std::string(name) +
                              "' (expected 'lobato' or 'kirkland')");
}

std::string_view parametrization_name(parametrization p) {
  return p == parametrization::lobato ? "lobato" : "kirkland";
}

int atomic_number(std::string_view symbol) {
  for (std::size_t i = 0; i < element_symbols.size(); ++i)
    if (element_symbols[i] == symbol) return static_cast<int>(i) + 1;
  throw std::invalid_argument("unknown chemical symbol '" + std::string(symbol) +
                              "' (elements H to Lr are tabulated)");
}

std::string_view element_symbol(int z) {
  check_atomic_number(z);
  return element_symbols[static_cast<std::size_t>(z - 1)];
}

// Each scattering-factor term and the potential it stands for, with
// C = potential_prefactor, K = 2πk and V(r) = C ∫ f_e(q) exp(2πi q·r) d³q:
//
// Lobato, a (2 + b k²)/(1 + b k²)² = a β² / (K² + β²) + a β⁴ / (K² + β²)²,
// β = 2π/sqrt(b).  As 4π/(K² + β²) and 8πβ/(K² + β²)² are the 3D Fourier
// transforms of exp(-βr)/r and exp(-βr),
//   V(r) = C a β²/(4π) exp(-βr)/r + C a β³/(8π) exp(-βr).
// Kirkland, a/(k² + b) = 4π² a/(K² + β²), β = 2π sqrt(b):  V(r) = C π a exp(-βr)/r;
//   c exp(-d k²):  V(r) = C c (π/d)^{3/2} exp(-π² r²/d).
// Projection along z uses ∫ exp(-βρ)/ρ dz = 2 K0(βr), ∫ exp(-βρ) dz = 2 r K1(βr)
// (ρ² = r² + z²) and ∫ exp(-α ρ²) dz = sqrt(π/α) exp(-α r²).
atomic_potential::atomic_potential(parametrization kind, int z) : kind_(kind), z_(z) {
  check_atomic_number(z);
  const auto row = static_cast<std::size_t>(z - 1);
  constexpr double c = potential_prefactor;
  if (kind == parametrization::lobato) {
    const auto& p = lobato_table[row];
    for (std::size_t i = 0; i < 10; ++i) raw_[i] = p[i];
    n_exp_ = 5;
    for (std::size_t i = 0; i < 5; ++i) {
      const double a = p[i], b = p[5 + i];
      const double beta = 2.0 * pi / std::sqrt(b);
      beta_[i] = beta;
      yukawa_[i] = c * a * beta * beta / (4.0 * pi);
      expo_[i] = c * a * beta * beta * beta / (8.0 * pi);
    }
  } else {
    const auto& p = kirkland_table[row];
    for (std::size_t i = 0; i < 12; ++i) raw_[i] = p[i];
    n_exp_ = 3;
    n_gauss_ = 3;
    for (std::size_t i = 0; i < 3; ++i) {
      beta_[i] = 2.0 * pi * std::sqrt(p[3 + i]);
      yukawa_[i] = c * pi * p[i];
      expo_[i] = 0.0;
      const double cg = p[6 + i], d = p[9 + i];
      alpha_[i] = pi * pi / d;
      gauss_[i] = c * cg * std::pow(pi / d, 1.5);
    }
  }
}

double atomic_potential::scattering_factor(double k) const noexcept {
  const double k2 = k * k;
  double f = 0.0;
  if (kind_ == parametrization::lobato) {
    for (std::size_t i = 0; i < 5; ++i) {
      const double bk2 = raw_[5 + i] * k2;
      f += raw_[i] * (2.0 + bk2) / ((1.0 + bk2) * (1.0 + bk2));
    }
  } else {
    for (std::size_t i = 0; i < 3; ++i)
      f += raw_[i] / (k2 + raw_[3 + i]) + raw_[6 + i] * std::exp(-raw_[9 + i] * k2);
  }
  return f;
}

double atomic_potential::projected_potential_fourier(double k) const noexcept {
  return potential_prefactor * scattering_factor(k);
}

double atomic_potential::potential(double r) const noexcept {
  r = std::abs(r);
  if (r == 0.0) return infinity;
  double v = 0.0;
  for (int i = 0; i < n_exp_; ++i)
    v += (yukawa_[i] / r + expo_[i]) * std::exp(-beta_[i] * r);
  for (int i = 0; i < n_gauss_; ++i) v += gauss_[i] * std::exp(-alpha_[i] * r * r);
  return v;
}

double atomic_potential::projected_potential(double r) const noexcept {
  r = std::abs(r);
  if (r == 0.0) return infinity;
  if (r == infinity) return 0.0;  // r K1(beta r) would read inf * 0
  double v = 0.0;
  for (int i = 0; i < n_exp_; ++i) {
    const bessel_k01 k = bessel_k0_k1(beta_[i] * r);
    v += 2.0 * (yukawa_[i] * k.k0 + expo_[i] * r * k.k1);
  }
  for (int i = 0; i < n_gauss_; ++i)
    v += gauss_[i] * std::sqrt(pi / alpha_[i]) * std::exp(-alpha_[i] * r * r);
  return v;
}

void atomic_potential::scattering_factor(const double* k, double* out, std::size_t n) const noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = scattering_factor(k[i]);
}

void atomic_potential::potential(const double* r, double* out, std::size_t n) const noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = potential(r[i]);
}

void atomic_potential::projected_potential(const double* r, double* out, std::size_t n) const noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = projected_potential(r[i]);
}

void atomic_potential::projected_potential_fourier(const double* k, double* out,
                                                   std::size_t n) const noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = projected_potential_fourier(k[i]);
}

void scattering_factor(parametrization kind, int z, const double* k, double* out, std::size_t n) {
  atomic_potential(kind, z).scattering_factor(k, out, n);
}

void potential(parametrization kind, int z, const double* r, double* out, std::size_t n) {
  atomic_potential(kind, z).potential(r, out, n);
}

void projected_potential(parametrization kind, int z, const double* r, double* out, std::size_t n) {
  atomic_potential(kind, z).projected_potential(r, out, n);
}

void projected_potential_fourier(parametrization kind, int z, const double* k, double* out,
                                 std::size_t n) {
  atomic_potential(kind, z).projected_potential_fourier(k, out, n);
}

}  // namespace heteroagg
