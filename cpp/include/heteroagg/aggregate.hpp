// The stochastic 3D hetero-aggregate model: parameters, the aggregate type and
// the sampler.  Geometry is in nm.  The algorithm is documented in
// docs/model.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace heteroagg {

enum material : std::uint8_t { tio2 = 0, wo3 = 1 };

// The parameter vector theta of the model (see docs/model.md for each field).
struct model_params {
  int n_particles = 50;
  double frac_w = 0.3;
  double radius_ti = 5.0;   // nm, median of the TiO2 lognormal radius law
  double radius_w = 3.0;    // nm, median of the WO3 lognormal radius law
  double sigma_g = 1.2;     // geometric standard deviation of both laws
  double fractal_dim = 1.8;
  double prefactor = 1.3;
  double segregation = 0.0;  // 0 random mixing ... 1 one homo-cluster per material
  double overlap = 0.0;      // neck overlap as a fraction of r_i + r_j
};

// Valid ranges; validate() names the field and its range on failure.
constexpr int max_particles = 1000000;
constexpr double max_sigma_g = 3.0;
constexpr double max_overlap = 0.5;
constexpr double min_radius = 1e-3;  // nm: the median radii's range
constexpr double max_radius = 1e4;

// Throws std::invalid_argument naming the offending field and its valid range.
void validate(const model_params& params);

// Number of WO3 particles: round(frac_w * N), halves rounded up.
int n_wo3(const model_params& params);

// Tuning of the sampler's bounded search.  The defaults suit every parameter
// set that can be built; the bounds make failure fast, never a hang.
struct sampler_options {
  int pair_tries = 48;        // candidate contact pairs tried per gamma value
  int placement_tries = 12;   // random placements tried per candidate pair
  int gamma_relaxations = 24; // widening steps of gamma when a merge fails
  double max_rg_error = 0.05; // accepted relative deviation of the final R_g from the law
  int aggregate_tries = 4;    // complete restarts (new sub-streams) before giving up
};

// Throws std::invalid_argument naming the first option out of its range.
void validate(const sampler_options& options);

struct aggregate {
  std::vector<double> centers;  // (n, 3) row-major, nm, volume-weighted centre at the origin
  std::vector<double> radii;    // (n,), nm
  std::vector<std::uint8_t> materials;  // (n,), see `material`
  std::size_t size() const { return radii.size(); }
};

// Raised when a parameter set cannot be built within the bounded search.
class generation_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raised when the caller's cancel flag was set while sampling.
class sampling_cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Target radius of gyration of the fractal law N = k_f (R_g / r_geo)^D_f for
// n particles whose geometric-mean radius is r_geo.
double fractal_law_rg(int n, double r_geo, double fractal_dim, double prefactor);

// Sample one aggregate; a pure function of (params, seed, options).  When
// `cancel` is given and becomes true, sampling stops at its next merge with
// sampling_cancelled.
aggregate sample_aggregate(const model_params& params, std::uint64_t seed,
                           const sampler_options& options = {},
                           const std::atomic<bool>* cancel = nullptr);

// One entry of a batch: the aggregate, or the error that stopped it.
struct batch_item {
  aggregate value;
  std::string error;          // empty on success
  bool invalid_input = false; // error came from validate()
};

// Sample many aggregates on `threads` worker threads (0 = hardware threads).
// Item i depends only on (params[i], seeds[i]); the thread count never changes
// the result.  Errors are returned per item, never thrown across threads;
// a set `cancel` stops every worker and throws sampling_cancelled.
std::vector<batch_item> sample_aggregates(const std::vector<model_params>& params,
                                          const std::vector<std::uint64_t>& seeds,
                                          int threads = 0, const sampler_options& options = {},
                                          const std::atomic<bool>* cancel = nullptr);

}  // namespace heteroagg
