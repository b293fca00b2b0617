// Independent-atom electrostatic potentials from parametrised electron
// scattering factors (Lobato & Van Dyck 2014; Kirkland 2010).
//
// Units: spatial frequency k in 1/Å with no factor 2π (k = 1/d, as numpy's
// fftfreq), radius r in Å, scattering factor in Å, potential in V,
// projected potential in V·Å, its 2D Fourier transform in V·Å³.
//
// Fourier convention (3D and 2D alike):
//   V(r)   = C ∫ f_e(|q|) exp(2πi q·r) d³q,
//   V_z(r) = ∫ V(r, z) dz = ∫ F(|k|) exp(2πi k·r) d²k,   F(k) = C f_e(k),
// with C = h² / (2π m_e e) = 2π a_0² E_h / e ≈ 47.8776 V·Å² (CODATA 2014).
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace heteroagg {

/// h² / (2π m_e e) in V·Å², from the CODATA 2014 values of h, m_e and e
/// (those of ASE's default unit set, hence of abTEM).
inline constexpr double potential_prefactor = [] {
  constexpr double h = 6.62607004e-34;      // J s
  constexpr double m_e = 9.10938356e-31;    // kg
  constexpr double e = 1.6021766208e-19;    // C
  constexpr double pi = 3.141592653589793;
  return h * h / (2.0 * pi * m_e * e) * 1e20;  // m² V -> Å² V
}();

/// Largest atomic number in the parameter tables (Lr).
inline constexpr int max_atomic_number = 103;

enum class parametrization { lobato, kirkland };

/// "lobato" or "kirkland" (any case); std::invalid_argument otherwise.
parametrization parametrization_from_name(std::string_view name);
std::string_view parametrization_name(parametrization p);

/// Atomic number of a chemical symbol ("W", "Ti"; case-sensitive);
/// std::invalid_argument when unknown or beyond max_atomic_number.
int atomic_number(std::string_view symbol);
/// Chemical symbol of Z; std::invalid_argument outside 1..max_atomic_number.
std::string_view element_symbol(int z);

/// Modified Bessel functions of the second kind K0(x) and K1(x), x > 0
/// (power series for x < 2, trapezoidal quadrature of an integral
/// representation above; relative error below 1e-14).  Both are +inf at
/// x = 0 and NaN for x < 0 or NaN.
struct bessel_k01 {
  double k0;
  double k1;
};
bessel_k01 bessel_k0_k1(double x);

/// The radial functions of one element in one parametrisation.  Every
/// function depends on |k| or |r| only.
class atomic_potential {
 public:
  /// std::invalid_argument unless 1 <= z <= max_atomic_number.
  atomic_potential(parametrization kind, int z);

  parametrization kind() const noexcept { return kind_; }
  int atomic_number() const noexcept { return z_; }

  /// Electron scattering factor f_e(k) [Å] at spatial frequency k [1/Å].
  double scattering_factor(double k) const noexcept;
  /// Electrostatic potential V(r) [V]; +inf at r = 0.
  double potential(double r) const noexcept;
  /// Infinitely projected potential V_z(r) = ∫ V dz [V·Å]; +inf at r = 0.
  double projected_potential(double r) const noexcept;
  /// 2D Fourier transform F(k) = C f_e(k) of V_z [V·Å³] (see file header).
  double projected_potential_fourier(double k) const noexcept;

  // The same over arrays: out[i] = f(in[i]) for i < n.
  void scattering_factor(const double* k, double* out, std::size_t n) const noexcept;
  void potential(const double* r, double* out, std::size_t n) const noexcept;
  void projected_potential(const double* r, double* out, std::size_t n) const noexcept;
  void projected_potential_fourier(const double* k, double* out, std::size_t n) const noexcept;

  /// The tabulated parameters: Lobato a_1..a_5, b_1..b_5; Kirkland
  /// a_1..a_3, b_1..b_3, c_1..c_3, d_1..d_3 (then two unused zeros).
  const std::array<double, 12>& parameters() const noexcept { return raw_; }

 private:
  parametrization kind_;
  int z_;
  std::array<double, 12> raw_{};
  // Exponential or Yukawa terms (Lobato: 5, Kirkland: 3): V(r) holds
  // yukawa[i] exp(-beta[i] r) / r + expo[i] exp(-beta[i] r).
  int n_exp_ = 0;
  std::array<double, 5> beta_{};
  std::array<double, 5> yukawa_{};  // V·Å
  std::array<double, 5> expo_{};    // V
  // Gaussian terms (Kirkland: 3): V(r) holds gauss[i] exp(-alpha[i] r²).
  int n_gauss_ = 0;
  std::array<double, 3> alpha_{};  // 1/Å²
  std::array<double, 3> gauss_{};  // V
};

// One-call forms for an element given by parametrisation and Z; they throw
// std::invalid_argument like the constructor.
void scattering_factor(parametrization kind, int z, const double* k, double* out, std::size_t n);
void potential(parametrization kind, int z, const double* r, double* out, std::size_t n);
void projected_potential(parametrization kind, int z, const double* r, double* out, std::size_t n);
void projected_potential_fourier(parametrization kind, int z, const double* k, double* out,
                                 std::size_t n);

}  // namespace heteroagg
