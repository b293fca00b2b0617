// Structural descriptors of an aggregate of spheres: contacts, (hetero-)
// coordination, radius of gyration and the gyration-tensor shape.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace heteroagg {

struct descriptor_result {
  std::size_t n_particles = 0;
  std::size_t n_ti = 0;
  std::size_t n_w = 0;
  // Contact pairs (i < j), row-major (M, 2): d_ij <= (r_i + r_j)(1 + tol).  Their
  // order is deterministic (a function of the input) but unspecified.
  std::vector<std::int64_t> contacts;
  std::vector<std::int32_t> cn;   // contacts per particle
  std::vector<std::int32_t> hcn;  // contacts with the other material per particle
  std::int64_t n_contacts = 0;
  std::int64_t n_hetero_contacts = 0;
  double coordination_number = 0.0;
  double hetero_coordination_number = 0.0;
  double hetero_coordination_ti = 0.0;  // NaN without TiO2 particles
  double hetero_coordination_w = 0.0;   // NaN without WO3 particles
  double hetero_contact_fraction = 0.0; // NaN without contacts
  // Connected components of the contact graph restricted to homo contacts.
  std::int64_t n_homo_clusters_ti = 0;
  std::int64_t n_homo_clusters_w = 0;
  std::int64_t n_components = 0;  // of the full contact graph
  double radius_of_gyration = 0.0;  // nm, volume-weighted with the (3/5) r^2 self term
  // Eigenvalues of the volume-weighted gyration tensor (self terms included),
  // ascending, nm^2; they sum to R_g^2.
  std::array<double, 3> gyration_eigenvalues{0.0, 0.0, 0.0};
  double asphericity = 0.0;               // l3 - (l1 + l2) / 2, nm^2
  double acylindricity = 0.0;             // l2 - l1, nm^2
  double relative_shape_anisotropy = 0.0; // kappa^2 in [0, 1]
  double volume_fraction_wo3 = 0.0;       // WO3 volume / particle volume
  double total_volume = 0.0;              // sum of sphere volumes, nm^3 (overlaps not removed)
};

// `centers` is (n, 3) row-major; throws std::invalid_argument on bad input.
descriptor_result compute_descriptors(const double* centers, const double* radii,
                                      const std::uint8_t* materials, std::size_t n,
                                      double contact_tol);

// Eigenvalues (ascending) of the symmetric 3x3 matrix
// [[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]].
std::array<double, 3> symmetric_eigenvalues(double a00, double a01, double a02, double a11,
                                            double a12, double a22);

}  // namespace heteroagg
