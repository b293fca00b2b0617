// The hetero-aggregate sampler.  See docs/model.md for the algorithm.
#include "heteroagg/aggregate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <thread>

#include "heteroagg/geometry.hpp"
#include "heteroagg/grid.hpp"
#include "heteroagg/rng.hpp"
#include "format.hpp"

namespace heteroagg {

namespace {

[[noreturn]] void invalid(const char* field, const char* range, double value) {
  throw std::invalid_argument(std::string(field) + " must be " + range + ", got " +
                              detail::format_number(value));
}

bool finite(double x) { return std::isfinite(x); }

// Stream id of one sampler attempt: "aggr" in the high 32 bits, so that no
// attempt shares a stream with the renderer's (ids below 2^48 without it) when
// one seed keys both.
std::uint64_t attempt_stream(int attempt) {
  return (std::uint64_t{0x61676772u} << 32) | static_cast<std::uint32_t>(attempt);
}

// A rigid cluster under construction, with the mass moments needed for the
// fractal law.  Mass is particle volume (r^3); the second moment includes
// the (3/5) r^2 self term of a homogeneous sphere.
struct cluster {
  std::vector<vec3> pos;
  std::vector<double> radius;
  std::vector<std::uint32_t> id;
  double mass = 0.0;
  vec3 first_moment;
  double second_moment = 0.0;
  double log_radius_sum = 0.0;

  std::size_t size() const { return pos.size(); }
  vec3 center() const { return (1.0 / mass) * first_moment; }
  // mass * R_g^2 about the centre of mass
  double inertia() const { return second_moment - norm2(first_moment) / mass; }

  void add(vec3 p, double r, std::uint32_t index) {
    const double m = r * r * r;
    pos.push_back(p);
    radius.push_back(r);
    id.push_back(index);
    mass += m;
    first_moment = first_moment + m * p;
    second_moment += m * (norm2(p) + 0.6 * r * r);
    log_radius_sum += std::log(r);
  }
};

struct merge_failure {};

// Merges with at most this many particle pairs list every feasible pair;
// larger ones draw pairs by rejection sampling.
constexpr std::size_t full_enumeration_limit = 4096;

// Sequential growth rebuilds its neighbour grid at every step (quadratic in
// the sub-cluster size), so hierarchical assembly caps the sub-clusters.
constexpr std::size_t max_subcluster = 64;

// Above this size the quadratic sequential growth is not used as a fallback.
constexpr int max_sequential_fallback = 4096;

class sampler {
 public:
  sampler(const model_params& params, const sampler_options& options, philox_stream& rng,
          double subcluster_fraction, const std::atomic<bool>* cancel)
      : params_(params),
        options_(options),
        rng_(rng),
        contact_factor_(1.0 - params.overlap),
        subcluster_fraction_(subcluster_fraction),
        cancel_(cancel) {}

  aggregate run(double& rg_relative_error);

 private:
  cluster assemble(std::vector<cluster> units);
  cluster merge_halves(std::vector<cluster>& level, std::size_t first, std::size_t last);
  void merge(cluster& a, cluster& b);
  // Relative deviation of a cluster's R_g from the fractal law.
  double law_miss(const cluster& c) const {
    const int n = static_cast<int>(c.size());
    const double rg = std::sqrt(std::max(0.0, c.inertia() / c.mass));
    const double target =
        fractal_law_rg(n, std::exp(c.log_radius_sum / n), params_.fractal_dim, params_.prefactor);
    return std::fabs(rg / target - 1.0);
  }
  bool try_pair(const cluster& a, const cluster& b, std::uint32_t i, std::uint32_t j, double gamma,
                vec3 ca, double reach_a);
  // Whether b's particle of radius r at y overlaps none of a's.
  bool clear_of(const cluster& a, vec3 y, double r);
  void build_class_grids(const cluster& a);
  // Append b's particles, at the positions try_pair left in placed_, to a.
  void attach_placed(cluster& a, const cluster& b) {
    for (std::size_t k = 0; k < b.size(); ++k) a.add(placed_[k], b.radius[k], b.id[k]);
  }

  const model_params& params_;
  const sampler_options& options_;
  philox_stream& rng_;
  double contact_factor_;
  double subcluster_fraction_;
  const std::atomic<bool>* cancel_;
  double scale_ = 1.0;  // twice the largest radius: the unit of the tolerances
  double length_eps_ = 1e-12;
  // Radius classes: class k holds the radii in (bars_[k-1], bars_[k]]; the
  // last bar is the largest radius.
  std::vector<double> bars_;
  // scratch buffers reused across merges
  std::vector<double> da_, db_;
  std::vector<vec3> vb_;
  std::vector<std::uint64_t> candidates_;
  std::vector<std::uint32_t> by_distance_;    // b's particles sorted by distance to its centre
  std::vector<double> sorted_db_;
  std::vector<std::uint32_t> range_begin_;    // per particle of a: first candidate in by_distance_
  std::vector<std::uint64_t> range_total_;    // prefix sums of the candidate range lengths
  std::vector<vec3> placed_;
  // The neighbour grid of all of a's particles, in cells of twice the largest
  // radius, and, when the classes serve better, a's particles up to bar k
  // (all classes <= k, upto_) and of class k alone (class_), each in cells
  // of twice bars_[k].
  std::optional<cell_list> all_;
  std::vector<std::vector<std::uint32_t>> upto_ids_, class_ids_;
  std::vector<cell_list> upto_, class_;
  bool use_classes_ = false;      // this merge searches the classes
  bool classes_decided_ = false;  // whether it still samples the grid of all
  std::uint64_t probe_queries_ = 0, probe_points_ = 0;
};

aggregate sampler::run(double& rg_relative_error) {
  const int n = params_.n_particles;
  const int nw = n_wo3(params_);
  const int nti = n - nw;
  const double log_sigma = std::log(params_.sigma_g);

  std::vector<double> radii(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> materials(static_cast<std::size_t>(n));
  double r_max = 0.0;
  for (int k = 0; k < n; ++k) {
    const bool is_w = k >= nti;
    const double median = is_w ? params_.radius_w : params_.radius_ti;
    const double z = rng_.normal();
    radii[k] = median * std::exp(log_sigma * z);
    materials[k] = is_w ? wo3 : tio2;
    r_max = std::max(r_max, radii[k]);
  }
  scale_ = 2.0 * r_max;
  length_eps_ = 1e-12 * r_max;
  // With very unequal radii, cells sized by the largest would each hold a
  // large part of the aggregate, and every overlap check would read it.
  // Then the radii are split into classes at 4 times the median and every
  // factor 16 above (see merge).
  bars_.clear();
  std::vector<double> sorted_radii(radii);
  const auto q90 = sorted_radii.begin() + static_cast<std::ptrdiff_t>(0.9 * (n - 1));
  std::nth_element(sorted_radii.begin(), q90, sorted_radii.end());
  if (r_max > 4.0 * *q90) {
    const auto q50 = sorted_radii.begin() + static_cast<std::ptrdiff_t>(0.5 * (n - 1));
    std::nth_element(sorted_radii.begin(), q50, q90);
    double radius_sum = 0.0;
    for (const double r : radii) radius_sum += r;
    // points are placed and queried within 4 radius_sum of the origin: keep
    // that below 2^19 cells of the smallest class (the grid takes 2^20)
    if (4.0 * radius_sum < 8.0 * *q50 * static_cast<double>(1 << 19))
      for (double bar = 4.0 * *q50; bar < r_max; bar *= 16.0) bars_.push_back(bar);
  }
  bars_.push_back(r_max);

  // Homo-groups: material m with N_m particles is split into
  // round(N_m^(1 - segregation)) groups of near-equal size.
  std::vector<cluster> units;
  auto add_groups = [&](int first, int count) {
    if (count == 0) return;
    const long groups = std::max(1L, std::lround(std::pow(count, 1.0 - params_.segregation)));
    for (long g = 0; g < groups; ++g) {
      const int lo = first + static_cast<int>(count * g / groups);
      const int hi = first + static_cast<int>(count * (g + 1) / groups);
      std::vector<cluster> monomers(static_cast<std::size_t>(hi - lo));
      for (int k = lo; k < hi; ++k)
        monomers[k - lo].add(vec3{}, radii[k], static_cast<std::uint32_t>(k));
      units.push_back(assemble(std::move(monomers)));
    }
  };
  add_groups(0, nti);
  add_groups(nti, nw);
  for (std::size_t k = units.size(); k > 1; --k)
    std::swap(units[k - 1], units[rng_.below(static_cast<std::uint32_t>(k))]);
  cluster whole = assemble(std::move(units));

  rg_relative_error = law_miss(whole);

  // Centre on the volume-weighted centre and turn by a uniform rotation.
  const vec3 c = whole.center();
  const mat3 turn = random_rotation(rng_);
  aggregate out;
  out.centers.resize(3 * whole.size());
  out.radii.resize(whole.size());
  out.materials.resize(whole.size());
  for (std::size_t k = 0; k < whole.size(); ++k) {
    const vec3 p = turn * (whole.pos[k] - c);
    out.centers[3 * k] = p.x;
    out.centers[3 * k + 1] = p.y;
    out.centers[3 * k + 2] = p.z;
    out.radii[k] = whole.radius[k];
    out.materials[k] = materials[whole.id[k]];
  }
  return out;
}

// Sub-clusters by sequential (particle-cluster style) growth up to n_sub
// particles, then pairwise (cluster-cluster) merges until one is left.
cluster sampler::assemble(std::vector<cluster> units) {
  if (units.empty()) return cluster{};
  std::size_t total = 0;
  for (const auto& u : units) total += u.size();
  const std::size_t n_sub =
      subcluster_fraction_ >= 1.0
          ? total
          : std::clamp<std::size_t>(
                static_cast<std::size_t>(std::ceil(subcluster_fraction_ * static_cast<double>(total))),
                std::min<std::size_t>(total, 10), max_subcluster);
  const bool sequential_only = n_sub >= total;

  std::vector<cluster> level;
  cluster current = std::move(units[0]);
  for (std::size_t k = 1; k < units.size(); ++k) {
    if (current.size() >= n_sub) {
      level.push_back(std::move(current));
      current = std::move(units[k]);
    } else {
      merge(current, units[k]);
      // Pure sequential growth cannot undo a large miss of the law later on:
      // give up on this attempt early instead of finishing a bad aggregate.
      if (sequential_only && current.size() >= 16 && law_miss(current) > 3.0 * options_.max_rg_error)
        throw merge_failure{};
    }
  }
  level.push_back(std::move(current));

  return merge_halves(level, 0, level.size());
}

// Merge level[first, last) as a balanced binary tree: split where the
// particle count is halved, build both halves, then merge them.
cluster sampler::merge_halves(std::vector<cluster>& level, std::size_t first, std::size_t last) {
  if (last - first == 1) return std::move(level[first]);
  std::size_t total = 0;
  for (std::size_t k = first; k < last; ++k) total += level[k].size();
  std::size_t split = first + 1, left = level[first].size();
  while (split + 1 < last && 2 * (left + level[split].size()) <= total) left += level[split++].size();
  cluster a = merge_halves(level, first, split);
  cluster b = merge_halves(level, split, last);
  if (a.size() < b.size()) std::swap(a, b);  // the larger one stays fixed
  merge(a, b);
  return a;
}

// Attach b to a so that the merged cluster obeys the fractal law: with the
// parallel-axis theorem, m3 Rg3^2 = Ia + Ib + (ma mb / m3) Gamma^2 fixes the
// distance Gamma between the two centres of mass.
void sampler::merge(cluster& a, cluster& b) {
  if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed))
    throw sampling_cancelled("aggregate sampling was cancelled");
  const std::size_t na = a.size(), nb = b.size();
  const int n3 = static_cast<int>(na + nb);
  const double r_geo = std::exp((a.log_radius_sum + b.log_radius_sum) / n3);
  const double rg_target = fractal_law_rg(n3, r_geo, params_.fractal_dim, params_.prefactor);
  const double m3 = a.mass + b.mass;
  const double gamma2 =
      m3 / (a.mass * b.mass) * (m3 * rg_target * rg_target - a.inertia() - b.inertia());
  const double gamma_target = std::sqrt(std::max(0.0, gamma2));

  const vec3 ca = a.center(), cb = b.center();
  da_.resize(na);
  db_.resize(nb);
  vb_.resize(nb);
  double reach_a = 0.0, reach_b = 0.0;  // largest d + c r over each cluster
  for (std::size_t i = 0; i < na; ++i) {
    da_[i] = norm(a.pos[i] - ca);
    reach_a = std::max(reach_a, da_[i] + contact_factor_ * a.radius[i]);
  }
  for (std::size_t j = 0; j < nb; ++j) {
    vb_[j] = b.pos[j] - cb;
    db_[j] = norm(vb_[j]);
    reach_b = std::max(reach_b, db_[j] + contact_factor_ * b.radius[j]);
  }
  const double gamma_max = reach_a + reach_b;  // tip-to-tip contact

  all_.emplace(na, scale_, [&](std::size_t i) { return a.pos[i]; });
  use_classes_ = false;
  classes_decided_ = bars_.size() == 1;
  probe_queries_ = probe_points_ = 0;

  const double tol = 1e-9 * scale_;
  // Pair (i, j) can touch with the centres of mass Gamma apart exactly when
  // the lengths (d_i, Gamma, d_j, c_ij) close a quadrilateral, i.e. for Gamma
  // in the interval [lo, hi] returned here.
  auto gamma_interval = [&](std::size_t i, std::size_t j) {
    const double c = contact_factor_ * (a.radius[i] + b.radius[j]);
    const double lo = std::max({0.0, std::fabs(da_[i] - db_[j]) - c, c - da_[i] - db_[j]});
    return std::pair<double, double>{lo, da_[i] + db_[j] + c};
  };
  auto feasible = [&](std::size_t i, std::size_t j, double g) {
    const auto [lo, hi] = gamma_interval(i, j);
    return g >= lo - tol && g <= hi + tol;
  };

  // Small merges list every feasible pair, together with the nearest Gamma
  // above and below at which some pair becomes feasible (to snap to).
  double next_feasible = 0.0, previous_feasible = 0.0;
  auto enumerate = [&](double g) {
    candidates_.clear();
    next_feasible = std::numeric_limits<double>::infinity();
    previous_feasible = -1.0;
    for (std::size_t i = 0; i < na; ++i)
      for (std::size_t j = 0; j < nb; ++j) {
        const auto [lo, hi] = gamma_interval(i, j);
        if (g < lo - tol)
          next_feasible = std::min(next_feasible, lo);
        else if (g > hi + tol)
          previous_feasible = std::max(previous_feasible, hi);
        else
          candidates_.push_back((static_cast<std::uint64_t>(i) << 32) | j);
      }
  };

  // Large merges never scan all na * nb pairs: with b's particles sorted by
  // d_j, each i of a has one range of j that can be feasible at all (bounds
  // taken over b's radius range), and pairs are drawn uniformly from those
  // ranges and kept when exactly feasible (rejection sampling).
  const bool sampled = na * nb > full_enumeration_limit;
  // Drawn pairs of large clusters mostly lie buried inside them, where every
  // placement overlaps: the tries grow by one pair_tries per doubling of the
  // merge beyond the enumeration limit, so the merge meets its Gamma instead
  // of relaxing it off the law.
  const int sampled_tries =
      sampled ? static_cast<int>(std::min<double>(
                    options_.pair_tries *
                        (1.0 + std::floor(std::log2(static_cast<double>(na * nb) /
                                                    static_cast<double>(full_enumeration_limit)))),
                    std::numeric_limits<int>::max()))
              : 0;
  double rb_min = b.radius[0], rb_max = b.radius[0];
  if (sampled) {
    by_distance_.resize(nb);
    for (std::size_t j = 0; j < nb; ++j) by_distance_[j] = static_cast<std::uint32_t>(j);
    std::sort(by_distance_.begin(), by_distance_.end(),
              [&](std::uint32_t x, std::uint32_t y) { return db_[x] < db_[y]; });
    sorted_db_.resize(nb);
    for (std::size_t k = 0; k < nb; ++k) sorted_db_[k] = db_[by_distance_[k]];
    for (const double r : b.radius) {
      rb_min = std::min(rb_min, r);
      rb_max = std::max(rb_max, r);
    }
  }
  auto index_ranges = [&](double g) {
    range_begin_.resize(na);
    range_total_.resize(na + 1);
    range_total_[0] = 0;
    for (std::size_t i = 0; i < na; ++i) {
      const double di = da_[i];
      const double c_min = contact_factor_ * (a.radius[i] + rb_min);
      const double c_max = contact_factor_ * (a.radius[i] + rb_max);
      const double lo = std::max({g - di - c_max, di - g - c_max, c_min - di - g}) - tol;
      const double hi = di + g + c_max + tol;
      const auto first = std::lower_bound(sorted_db_.begin(), sorted_db_.end(), lo);
      const auto last = std::upper_bound(first, sorted_db_.end(), hi);
      range_begin_[i] = static_cast<std::uint32_t>(first - sorted_db_.begin());
      range_total_[i + 1] = range_total_[i] + static_cast<std::uint64_t>(last - first);
    }
  };
  // One uniformly drawn feasible pair, or false after a bounded number of draws.
  auto draw_pair = [&](double g, std::uint32_t& i, std::uint32_t& j) {
    const std::uint64_t total = range_total_[na];
    if (total == 0) return false;
    for (int draw = 0; draw < 64; ++draw) {
      const std::uint64_t u = std::min<std::uint64_t>(
          total - 1, static_cast<std::uint64_t>(rng_.uniform() * static_cast<double>(total)));
      const auto row = std::upper_bound(range_total_.begin(), range_total_.end(), u) - 1;
      i = static_cast<std::uint32_t>(row - range_total_.begin());
      j = by_distance_[range_begin_[i] + (u - *row)];
      if (feasible(i, j, g)) return true;
    }
    return false;
  };

  double gamma = std::min(gamma_target, gamma_max);
  const bool relax_up = gamma < gamma_max * 0.999;
  for (int relaxation = 0; relaxation <= options_.gamma_relaxations; ++relaxation) {
    if (relaxation > 0) gamma = relax_up ? gamma + 0.15 * (gamma_max - gamma) : gamma * 0.98;
    if (relaxation == options_.gamma_relaxations && relax_up) gamma = gamma_max;
    if (sampled) {
      index_ranges(gamma);
      for (int t = 0; t < sampled_tries; ++t) {
        std::uint32_t i = 0, j = 0;
        if (!draw_pair(gamma, i, j)) break;
        if (try_pair(a, b, i, j, gamma, ca, reach_a)) return attach_placed(a, b);
      }
      continue;
    }
    enumerate(gamma);
    if (candidates_.empty()) {
      // Snap to the nearest Gamma where a contact is possible at all.
      const bool up = relax_up || previous_feasible < 0.0;
      const double snapped = up ? next_feasible : previous_feasible;
      if (!std::isfinite(snapped) || snapped < 0.0) continue;
      gamma = snapped;
      enumerate(gamma);
    }
    const std::size_t tries = std::min<std::size_t>(candidates_.size(), options_.pair_tries);
    for (std::size_t t = 0; t < tries; ++t) {
      const std::size_t pick =
          t + rng_.below(static_cast<std::uint32_t>(candidates_.size() - t));
      std::swap(candidates_[t], candidates_[pick]);
      const auto i = static_cast<std::uint32_t>(candidates_[t] >> 32);
      const auto j = static_cast<std::uint32_t>(candidates_[t] & 0xffffffffu);
      if (try_pair(a, b, i, j, gamma, ca, reach_a)) return attach_placed(a, b);
    }
  }
  throw merge_failure{};
}

// Random placements of b that put particle j of b in contact with particle i
// of a, with b's centre of mass at distance gamma from a's.  On success the
// placed coordinates of b are left in placed_.
bool sampler::try_pair(const cluster& a, const cluster& b, std::uint32_t i, std::uint32_t j,
                       double gamma, vec3 ca, double reach_a) {
  const double c = contact_factor_ * (a.radius[i] + b.radius[j]);
  const double di = da_[i], dj = db_[j];
  // Distance rho of the new position Q of particle j from a's centre.
  double rho_lo = std::max(std::fabs(gamma - dj), std::fabs(di - c));
  double rho_hi = std::min(gamma + dj, di + c);
  if (rho_lo > rho_hi) {
    if (rho_lo - rho_hi > 1e-9 * scale_) return false;
    rho_lo = rho_hi;
  }
  const vec3 xi = a.pos[i];
  const vec3 axis_i = di > length_eps_ ? (1.0 / di) * (xi - ca) : vec3{0, 0, 1};
  const vec3 e1 = any_orthogonal(axis_i), e2 = cross(axis_i, e1);
  placed_.resize(b.size());

  for (int attempt = 0; attempt < options_.placement_tries; ++attempt) {
    // Q on the sphere of radius c about x_i, uniform in area within the band.
    vec3 u;
    if (di > length_eps_ && c > length_eps_) {
      const double rho = std::sqrt(rng_.uniform(rho_lo * rho_lo, rho_hi * rho_hi));
      const double cos_g = std::clamp((rho * rho - di * di - c * c) / (2.0 * c * di), -1.0, 1.0);
      const double sin_g = std::sqrt(1.0 - cos_g * cos_g);
      const double phi = 6.283185307179586 * rng_.uniform();
      u = cos_g * axis_i + sin_g * (std::cos(phi) * e1 + std::sin(phi) * e2);
      u = normalized(u);
    } else {
      u = random_unit_vector(rng_);
    }
    const vec3 q = xi + c * u;

    // Centre P of b: |P - ca| = gamma and |P - Q| = d_j.
    mat3 turn;
    if (dj > length_eps_) {
      vec3 p = ca;
      const vec3 qa = q - ca;
      const double rq = norm(qa);
      if (gamma > length_eps_ && rq > length_eps_) {
        const vec3 axis_q = (1.0 / rq) * qa;
        const vec3 f1 = any_orthogonal(axis_q), f2 = cross(axis_q, f1);
        const double cos_b =
            std::clamp((gamma * gamma + rq * rq - dj * dj) / (2.0 * gamma * rq), -1.0, 1.0);
        const double sin_b = std::sqrt(1.0 - cos_b * cos_b);
        const double psi = 6.283185307179586 * rng_.uniform();
        p = ca + gamma * (cos_b * axis_q + sin_b * (std::cos(psi) * f1 + std::sin(psi) * f2));
      }
      const vec3 w = q - p;
      const vec3 w_hat = norm(w) > length_eps_ ? normalized(w) : random_unit_vector(rng_);
      const double spin = 6.283185307179586 * rng_.uniform();
      turn = axis_angle_rotation(w_hat, spin) * align_rotation((1.0 / dj) * vb_[j], w_hat);
    } else {
      turn = random_rotation(rng_);
    }
    // Translate so that particle j lands exactly on Q: the contact is exact.
    const vec3 shift = q - turn * vb_[j];

    bool clear = true;
    for (std::size_t k = 0; k < b.size() && clear; ++k) {
      const vec3 y = shift + turn * vb_[k];
      placed_[k] = y;
      const double rk = b.radius[k];
      // Outside a's bounding sphere about its centre nothing can overlap.
      const double reach = reach_a + contact_factor_ * rk;
      if (norm2(y - ca) > reach * reach) continue;
      clear = clear_of(a, y, rk);
    }
    if (clear) return true;
  }
  return false;
}

// With very unequal radii the grid of all, in cells of twice the largest
// radius, can hold many points in each cell.  Each merge then reads how many
// points its first 256 checks see, and beyond 48 a check (the cost of about
// the 27 more cell lookups that a class adds) it searches the classes
// instead: a particle of class q can overlap one of a's of radius r only
// within contact_factor_ (r_q + r) <= 2 max(bar_q, bar of r), so the 27
// cells around it in the grid of all radii up to bar_q and in the grid of
// each class above hold every candidate.  Either way the same overlaps are
// found: the choice changes the time, never the aggregate.
bool sampler::clear_of(const cluster& a, vec3 y, double r) {
  bool clear = true;
  std::uint64_t seen = 0;
  auto no_overlap = [&](std::uint32_t l) {
    ++seen;
    const double min_d = contact_factor_ * (r + a.radius[l]) * (1.0 - 1e-9);
    if (norm2(y - a.pos[l]) < min_d * min_d) {
      clear = false;
      return false;
    }
    return true;
  };
  if (!use_classes_) {
    all_->for_each_near(y, no_overlap);
    if (!classes_decided_) {
      probe_points_ += seen;
      if (++probe_queries_ == 256) {
        classes_decided_ = true;
        if (probe_points_ > 48 * probe_queries_) build_class_grids(a);
      }
    }
    return clear;
  }
  const std::size_t last = bars_.size() - 1;
  const std::size_t q = std::min<std::size_t>(std::lower_bound(bars_.begin(), bars_.end(), r) - bars_.begin(), last);
  (q == last ? *all_ : upto_[q]).for_each_near(y, no_overlap);
  for (std::size_t k = q + 1; k <= last && clear; ++k)
    if (class_[k].size() > 0) class_[k].for_each_near(y, no_overlap);
  return clear;
}

void sampler::build_class_grids(const cluster& a) {
  const std::size_t classes = bars_.size();
  upto_ids_.assign(classes, {});
  class_ids_.assign(classes, {});
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::size_t k = std::lower_bound(bars_.begin(), bars_.end(), a.radius[i]) - bars_.begin();
    const auto id = static_cast<std::uint32_t>(i);
    if (k > 0 && k < classes) class_ids_[k].push_back(id);
    for (std::size_t up = k; up + 1 < classes; ++up) upto_ids_[up].push_back(id);
  }
  upto_.clear();
  class_.clear();
  for (std::size_t k = 0; k < classes; ++k) {
    const double cell = 2.0 * bars_[k];
    const auto& upto = upto_ids_[k];
    const auto& only = class_ids_[k];
    upto_.emplace_back(upto.size(), cell, [&](std::size_t m) { return a.pos[upto[m]]; }, upto.data());
    class_.emplace_back(only.size(), cell, [&](std::size_t m) { return a.pos[only[m]]; }, only.data());
  }
  use_classes_ = true;
}

// Cluster-cluster merges of equal halves cannot reach the compact R_g of
// high fractal dimensions; sequential growth can.  Low dimensions start with
// the faster hierarchical scheme and fall back to sequential growth.
double subcluster_fraction(const model_params& params, int attempt) {
  if (params.fractal_dim >= 2.1) return 1.0;
  if (attempt >= 2 && params.n_particles <= max_sequential_fallback) return 1.0;
  return 0.1;
}

}  // namespace

void validate(const model_params& p) {
  if (p.n_particles < 2 || p.n_particles > max_particles)
    invalid("n_particles", "an integer in [2, 1000000]", p.n_particles);
  if (!finite(p.frac_w) || p.frac_w < 0.0 || p.frac_w > 1.0)
    invalid("frac_w", "in [0, 1]", p.frac_w);
  if (!finite(p.radius_ti) || p.radius_ti < min_radius || p.radius_ti > max_radius)
    invalid("radius_ti", "a radius in [0.001, 10000] nm", p.radius_ti);
  if (!finite(p.radius_w) || p.radius_w < min_radius || p.radius_w > max_radius)
    invalid("radius_w", "a radius in [0.001, 10000] nm", p.radius_w);
  if (!finite(p.sigma_g) || p.sigma_g < 1.0 || p.sigma_g > max_sigma_g)
    invalid("sigma_g", "in [1, 3]", p.sigma_g);
  if (!finite(p.fractal_dim) || p.fractal_dim <= 1.0 || p.fractal_dim >= 3.0)
    invalid("fractal_dim", "in the open interval (1, 3)", p.fractal_dim);
  if (!finite(p.prefactor) || p.prefactor <= 0.0 || p.prefactor > 10.0)
    invalid("prefactor", "in (0, 10]", p.prefactor);
  if (!finite(p.segregation) || p.segregation < 0.0 || p.segregation > 1.0)
    invalid("segregation", "in [0, 1]", p.segregation);
  if (!finite(p.overlap) || p.overlap < 0.0 || p.overlap >= max_overlap)
    invalid("overlap", "in [0, 0.5)", p.overlap);
}

void validate(const sampler_options& o) {
  if (o.pair_tries < 1) invalid("pair_tries", "an integer >= 1", o.pair_tries);
  if (o.placement_tries < 1) invalid("placement_tries", "an integer >= 1", o.placement_tries);
  if (o.gamma_relaxations < 0) invalid("gamma_relaxations", "an integer >= 0", o.gamma_relaxations);
  if (!(o.max_rg_error >= 0.0) || !finite(o.max_rg_error))
    invalid("max_rg_error", "a finite number >= 0", o.max_rg_error);
  if (o.aggregate_tries < 1) invalid("aggregate_tries", "an integer >= 1", o.aggregate_tries);
}

int n_wo3(const model_params& params) {
  // Halves are those of the decimal product: 0.29 * 50 is 14.499999999999998
  // in binary, within a few ulps of 14.5, and rounds up to 15 all the same.
  const double product = params.frac_w * params.n_particles;
  return static_cast<int>(std::floor(product + 0.5 + 8.0 * std::numeric_limits<double>::epsilon() * product));
}

double fractal_law_rg(int n, double r_geo, double fractal_dim, double prefactor) {
  if (n < 1) invalid("n", "an integer >= 1", n);
  if (!finite(r_geo) || r_geo <= 0.0) invalid("r_geo", "a finite radius > 0", r_geo);
  if (!finite(fractal_dim) || fractal_dim <= 0.0) invalid("fractal_dim", "finite and > 0", fractal_dim);
  if (!finite(prefactor) || prefactor <= 0.0) invalid("prefactor", "finite and > 0", prefactor);
  return r_geo * std::pow(static_cast<double>(n) / prefactor, 1.0 / fractal_dim);
}

aggregate sample_aggregate(const model_params& params, std::uint64_t seed,
                           const sampler_options& options, const std::atomic<bool>* cancel) {
  validate(params);
  validate(options);
  double best_error = std::numeric_limits<double>::infinity();
  int merge_failures = 0;
  for (int attempt = 0; attempt < options.aggregate_tries; ++attempt) {
    philox_stream rng(seed, attempt_stream(attempt));
    sampler s(params, options, rng, subcluster_fraction(params, attempt), cancel);
    try {
      double rg_error = 0.0;
      aggregate out = s.run(rg_error);
      if (rg_error <= options.max_rg_error) return out;
      best_error = std::min(best_error, rg_error);
    } catch (const merge_failure&) {
      ++merge_failures;
    }
  }
  using detail::format_number;
  std::string msg = "could not build an aggregate with n_particles=" +
                    std::to_string(params.n_particles) + ", fractal_dim=" + format_number(params.fractal_dim) +
                    ", prefactor=" + format_number(params.prefactor) + ", sigma_g=" + format_number(params.sigma_g) +
                    ", overlap=" + format_number(params.overlap) + " in " + std::to_string(options.aggregate_tries) +
                    " attempts (" + std::to_string(merge_failures) + " ran out of non-overlapping placements";
  if (std::isfinite(best_error))
    msg += "; the closest missed the fractal-law R_g by " + format_number(100.0 * best_error) + "%";
  msg += merge_failures == options.aggregate_tries
             ? "): the fractal law cannot be met by non-overlapping spheres for these parameters"
             : "): the bounded search did not meet the fractal law for these parameters (larger "
               "sampler options search further)";
  throw generation_error(msg);
}

std::vector<batch_item> sample_aggregates(const std::vector<model_params>& params,
                                          const std::vector<std::uint64_t>& seeds, int threads,
                                          const sampler_options& options,
                                          const std::atomic<bool>* cancel) {
  if (params.size() != seeds.size())
    throw std::invalid_argument("sample_aggregates: params and seeds differ in length");
  std::vector<batch_item> items(params.size());
  std::atomic<std::size_t> next{0};
  auto cancelled = [cancel] { return cancel != nullptr && cancel->load(std::memory_order_relaxed); };
  auto work = [&]() {
    for (std::size_t k = next++; k < items.size() && !cancelled(); k = next++) {
      try {
        items[k].value = sample_aggregate(params[k], seeds[k], options, cancel);
      } catch (const std::invalid_argument& e) {
        items[k].error = e.what();
        items[k].invalid_input = true;
      } catch (const std::exception& e) {
        items[k].error = e.what();
      }
    }
  };
  unsigned workers = threads > 0 ? static_cast<unsigned>(threads) : std::thread::hardware_concurrency();
  workers = std::max(1u, std::min<unsigned>(workers, static_cast<unsigned>(items.size())));
  if (workers <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(workers);
    for (unsigned t = 0; t < workers; ++t) pool.emplace_back(work);
    for (auto& th : pool) th.join();
  }
  if (cancelled()) throw sampling_cancelled("aggregate sampling was cancelled");
  return items;
}

}  // namespace heteroagg
