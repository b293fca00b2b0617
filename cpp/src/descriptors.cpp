#include "heteroagg/descriptors.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>

#include "contact_screen.hpp"
#include "heteroagg/geometry.hpp"
#include "heteroagg/grid.hpp"

namespace heteroagg {

namespace {

// Disjoint sets by Rem's algorithm with splicing: parents always point to
// smaller indices, so each set's root is its smallest member.
class disjoint_sets {
 public:
  explicit disjoint_sets(std::size_t n) : parent_(n), components_(n) {
    std::iota(parent_.begin(), parent_.end(), 0u);
  }
  void unite(std::uint32_t u, std::uint32_t v) {
    std::uint32_t pu = parent_[u], pv = parent_[v];
    while (pu != pv) {
      if (pu > pv) {
        std::swap(u, v);
        std::swap(pu, pv);
      }
      if (v == pv) {  // v is a root: hang it under the smaller parent
        parent_[v] = pu;
        --components_;
        return;
      }
      parent_[v] = pu;
      v = pv;
      pv = parent_[v];
    }
  }
  bool is_root(std::uint32_t x) const { return parent_[x] == x; }
  std::size_t components() const { return components_; }

 private:
  std::vector<std::uint32_t> parent_;
  std::size_t components_;
};

std::uint32_t lowest_bit(unsigned bits) {
#if defined(__GNUC__)
  return static_cast<std::uint32_t>(__builtin_ctz(bits));
#else
  std::uint32_t t = 0;
  while (!(bits & 1u)) {
    bits >>= 1;
    ++t;
  }
  return t;
#endif
}

// An array of n values left uninitialised, for buffers that are written in
// full before they are read.
template <class T>
std::unique_ptr<T[]> uninitialised(std::size_t n) {
  return std::unique_ptr<T[]>(new T[n]);
}

// Particle coordinates and contact reaches in single precision, in grid
// order, relative to the grid's lower corner, padded with zeros for
// whole-block loads.  `reach` widens each contact reach by more than every
// rounding error of a single-precision distance test (relative 1e-5, plus a
// few ulps of the extent per particle), so a float test against it never
// misses a contact; surely_touch() narrows it by as much again, so that
// test never invents one.
struct float_particles {
  std::unique_ptr<float[]> x, y, z, reach;
  float pad;

  float_particles(std::size_t n, float pad)
      : x(padded(n)), y(padded(n)), z(padded(n)), reach(padded(n)), pad(pad) {}

  static std::unique_ptr<float[]> padded(std::size_t n) {
    auto a = uninitialised<float>(n + detail::screen_padding);
    std::fill(a.get() + n, a.get() + n + detail::screen_padding, 0.0f);
    return a;
  }

  detail::screen_points screen_arrays() const { return {x.get(), y.get(), z.get(), reach.get()}; }

  // True when points k and l certainly touch: the widened reaches, shrunk by
  // relative 3e-5 and twice the padding each, are below the true ones.
  bool surely_touch(std::uint32_t k, std::uint32_t l) const {
    const float dx = x[l] - x[k], dy = y[l] - y[k], dz = z[l] - z[k];
    const float r = (reach[k] + reach[l]) * (1.0f - 3e-5f) - 4.0f * pad;
    return r > 0.0f && dx * dx + dy * dy + dz * dz <= r * r;
  }
};

// The contact test in double precision, the reference every search matches.
bool touching(const double* a, double ra, const double* b, double rb, double scale) {
  const double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  const double reach = (ra + rb) * scale;
  return dx * dx + dy * dy + dz * dz <= reach * reach;
}

// Contacts d_ij <= (r_i + r_j) scale as pairs (i, j), i < j, stored flat,
// given `grid`, a column_grid of the n centres at least 2 r_max scale wide.
// Pass 1 screens every point against its grid runs in single precision and
// records the blocks with hits; pass 2 settles each hit, in double
// precision only when the single-precision tests cannot.
std::vector<std::uint32_t> find_contacts(const column_grid& grid, const double* centers, const double* radii,
                                         std::size_t n, double scale, double r_max) {
  const std::uint32_t* order = grid.order();

  const vec3 lo = grid.lower(), hi = grid.upper();
  // Single precision in units of the largest contact reach, whatever the
  // aggregate's scale in nm: squares of nearby distances stay near 1, far
  // from float's overflow (1e38) and underflow (1e-38).
  const double unit = 2.0 * r_max * scale;
  const double extent = std::max({hi.x - lo.x, hi.y - lo.y, hi.z - lo.z}) / unit;
  const double pad = 8.0 * extent * std::ldexp(1.0, -24);
  float_particles fp(n, static_cast<float>(pad));
  const auto runs = uninitialised<detail::candidate_runs>(n);
  for (std::uint32_t k = 0; k < n; ++k) {
    const std::uint32_t i = order[k];
    fp.x[k] = static_cast<float>((centers[3 * i] - lo.x) / unit);
    fp.y[k] = static_cast<float>((centers[3 * i + 1] - lo.y) / unit);
    fp.z[k] = static_cast<float>((centers[3 * i + 2] - lo.z) / unit);
    fp.reach[k] = static_cast<float>(radii[i] * scale / unit * (1.0 + 1e-5) + pad);
    const column_grid::runs r = grid.runs_of(k);
    runs[k] = {r.ahead, r.next_first, r.next_last};
  }
  // The flagged blocks are few (about one per contact); the buffer starts
  // small and doubles whenever the screen stops for room.
  std::size_t capacity = n + 64, n_flagged = 0;
  auto flagged = uninitialised<detail::flagged_block>(capacity);
  for (std::uint32_t k = 0; k < n;) {
    const detail::screen_progress done = detail::screen_candidates(
        fp.screen_arrays(), k, n, runs.get(), flagged.get() + n_flagged, capacity - n_flagged);
    n_flagged += done.written;
    k = done.next_point;
    if (k < n) {
      auto larger = uninitialised<detail::flagged_block>(2 * capacity + detail::screen_capacity(k, runs[k]));
      std::copy(flagged.get(), flagged.get() + n_flagged, larger.get());
      capacity = 2 * capacity + detail::screen_capacity(k, runs[k]);
      flagged = std::move(larger);
    }
  }

  std::vector<std::uint32_t> pairs(2 * n_flagged + 32);
  std::size_t n_pairs = 0;
  for (std::size_t f = 0; f < n_flagged; ++f) {
    const std::uint32_t k = flagged[f].k;
    const std::uint32_t i = order[k];
    for (std::uint32_t hits = flagged[f].hits; hits; hits &= hits - 1u) {
      const std::uint32_t l = flagged[f].b + lowest_bit(hits);
      const std::uint32_t j = order[l];
      const bool touch =
          fp.surely_touch(k, l) || touching(centers + 3 * i, radii[i], centers + 3 * j, radii[j], scale);
      if (2 * n_pairs == pairs.size()) pairs.resize(4 * n_pairs);
      pairs[2 * n_pairs] = std::min(i, j);
      pairs[2 * n_pairs + 1] = std::max(i, j);
      n_pairs += touch;
    }
  }
  pairs.resize(2 * n_pairs);
  return pairs;
}

// Spheres far above the 90th percentile of the radii are giants, kept out of
// the grid, whose cells would otherwise all grow to their size (one such
// sphere among 80 000 made the search 50 times slower).  Many spheres a few
// times the percentile cost less in wider cells than searched one by one, so
// the bar is higher for them.  Sets smaller than min_split are not split.
constexpr std::size_t min_split = 64;

// Binary exponent of a positive finite double (0 for subnormals).
int exponent_bits(double x) {
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return static_cast<int>(bits >> 52);
}

// The radius above which spheres are giants, from a histogram of binary
// exponents: with t the top of the octave that holds the 90th percentile q,
// 2t (between 2q and 4q) when at most one sphere in 64 lies above it, else
// 4t (between 4q and 8q); infinity when no sphere exceeds it.  No more than
// a tenth of the spheres lie above it.
double giant_threshold(const double* radii, std::size_t n, double r_min, double r_max) {
  const double none = std::numeric_limits<double>::infinity();
  if (n < min_split || !(r_max > 2.0 * r_min)) return none;
  // Quick answer for most sets: when more than a tenth of the radii reach half
  // the largest, the walk below stops in one of the two top octaves, and both
  // bars lie above every radius.
  std::size_t halves = 0;
  for (std::size_t i = 0; i < n; ++i) halves += 2.0 * radii[i] >= r_max;
  if (10 * halves > n) return none;
  constexpr int octaves = 64;  // below the largest radius; smaller ones share the last
  const int top = exponent_bits(r_max);
  std::array<std::uint32_t, octaves> count{};
  for (std::size_t i = 0; i < n; ++i) ++count[std::min(top - exponent_bits(radii[i]), octaves - 1)];
  // walk down from the largest radii until more than a tenth lie above
  std::size_t above = 0;
  int octave = 0;
  while (10 * (above + count[octave]) <= n) above += count[octave++];
  // octave `octave` holds the 90th percentile; it spans [2^(e-1023), 2^(e-1022)),
  // and the radii above 2^(e-1021) lie in the octaves two and more above it
  const int e = top - octave;
  std::size_t beyond_twice = 0;
  for (int k = 0; k + 2 <= octave; ++k) beyond_twice += count[k];
  const double threshold = std::ldexp(1.0, 64 * beyond_twice <= n ? e - 1021 : e - 1020);
  return r_max > threshold ? threshold : none;
}

// The n centres and radii of the particles `members`, gathered.
struct particle_subset {
  std::vector<double> centers, radii;
  particle_subset(const double* c, const double* r, const std::vector<std::uint32_t>& members)
      : centers(3 * members.size()), radii(members.size()) {
    for (std::size_t k = 0; k < members.size(); ++k) {
      std::copy(c + 3 * members[k], c + 3 * members[k] + 3, centers.data() + 3 * k);
      radii[k] = r[members[k]];
    }
  }
};

// Contacts d_ij <= (r_i + r_j) scale of n spheres as pairs (i, j), i < j,
// stored flat.  Without giants, one grid finds them all.  With giants, the
// grid of the rest finds the rest's contacts, each giant's contacts with the
// rest come from the rest's grid cells within its reach, and the giants'
// among themselves from the same search on the giants alone: each level
// holds at most a tenth of the spheres of the one above.
// `box` holds the centres; r_min and r_max are the extreme radii.
std::vector<std::uint32_t> contact_pairs(const double* centers, const double* radii, std::size_t n,
                                         double scale, const std::array<vec3, 2>& box, double r_min,
                                         double r_max) {
  const double threshold = giant_threshold(radii, n, r_min, r_max);
  if (threshold == std::numeric_limits<double>::infinity())
    return find_contacts(column_grid(centers, n, 2.0 * r_max * scale, box), centers, radii, n, scale, r_max);
  std::vector<std::uint32_t> giants, rest;
  rest.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) (radii[i] > threshold ? giants : rest).push_back(i);

  const particle_subset small(centers, radii, rest), large(centers, radii, giants);
  const double r_small = *std::max_element(small.radii.begin(), small.radii.end());
  const column_grid grid(small.centers.data(), rest.size(), 2.0 * r_small * scale);
  std::vector<std::uint32_t> pairs =
      find_contacts(grid, small.centers.data(), small.radii.data(), rest.size(), scale, r_small);
  for (auto& p : pairs) p = rest[p];  // rest is ascending, so each pair stays ordered
  // The rest in grid order, so that each giant reads its runs contiguously.
  const std::uint32_t* order = grid.order();
  std::vector<double> sorted(4 * rest.size());
  for (std::size_t k = 0; k < rest.size(); ++k) {
    const std::uint32_t i = rest[order[k]];
    std::copy(centers + 3 * i, centers + 3 * i + 3, sorted.data() + 4 * k);
    sorted[4 * k + 3] = radii[i];
  }
  for (const std::uint32_t g : giants) {
    const double* at = centers + 3 * g;
    grid.for_each_run_near({at[0], at[1], at[2]}, (radii[g] + r_small) * scale,
                           [&](std::uint32_t first, std::uint32_t last) {
      for (std::uint32_t k = first; k < last; ++k) {
        const double* p = sorted.data() + 4 * k;
        if (touching(at, radii[g], p, p[3], scale)) {
          const std::uint32_t j = rest[order[k]];
          pairs.push_back(std::min(g, j));
          pairs.push_back(std::max(g, j));
        }
      }
    });
  }
  const double* large_centers = large.centers.data();
  const auto [large_min, large_max] = std::minmax_element(large.radii.begin(), large.radii.end());
  for (const std::uint32_t p : contact_pairs(large_centers, large.radii.data(), giants.size(), scale,
                                             column_grid::bounds(large_centers, giants.size()), *large_min,
                                             *large_max))
    pairs.push_back(giants[p]);
  return pairs;
}

}  // namespace

std::array<double, 3> symmetric_eigenvalues(double a00, double a01, double a02, double a11,
                                            double a12, double a22) {
  // Cyclic Jacobi rotations: accurate to rounding also where eigenvalues coincide
  // (a dimer's two equal ones), where the closed form of the characteristic cubic
  // keeps only half the digits.
  // Iterate in units of the largest entry, a power of two (exact), so that
  // squares neither overflow nor underflow for matrices of any scale.
  const double largest = std::max({std::fabs(a00), std::fabs(a01), std::fabs(a02), std::fabs(a11),
                                   std::fabs(a12), std::fabs(a22)});
  if (largest == 0.0 || !std::isfinite(largest)) {
    std::array<double, 3> d{a00, a11, a22};
    std::sort(d.begin(), d.end());
    return d;
  }
  const int unit = std::ilogb(largest);
  auto scaled = [unit](double x) { return std::scalbn(x, -unit); };
  double a[3][3] = {{scaled(a00), scaled(a01), scaled(a02)},
                    {scaled(a01), scaled(a11), scaled(a12)},
                    {scaled(a02), scaled(a12), scaled(a22)}};
  for (int sweep = 0; sweep < 16; ++sweep) {
    const double off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
    const double diagonal = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
    if (off <= 1e-36 * diagonal || off <= 1e-300) break;
    for (int p = 0; p < 2; ++p)
      for (int q = p + 1; q < 3; ++q) {
        const double apq = a[p][q];
        if (apq == 0.0) continue;
        const double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
        // the smaller root of t^2 + 2 theta t - 1 = 0, without overflow for large theta
        const double t = std::fabs(theta) > 1e150
                             ? 0.5 / theta
                             : std::copysign(1.0, theta) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int k = 0; k < 3; ++k) {
          const double kp = a[k][p], kq = a[k][q];
          a[k][p] = c * kp - s * kq;
          a[k][q] = s * kp + c * kq;
        }
        for (int k = 0; k < 3; ++k) {
          const double pk = a[p][k], qk = a[q][k];
          a[p][k] = c * pk - s * qk;
          a[q][k] = s * pk + c * qk;
        }
      }
  }
  std::array<double, 3> d{std::scalbn(a[0][0], unit), std::scalbn(a[1][1], unit), std::scalbn(a[2][2], unit)};
  std::sort(d.begin(), d.end());
  return d;
}

descriptor_result compute_descriptors(const double* centers, const double* radii,
                                      const std::uint8_t* materials, std::size_t n,
                                      double contact_tol) {
  if (n == 0) throw std::invalid_argument("descriptors: the aggregate has no particles");
  if (!(contact_tol >= 0.0) || !std::isfinite(contact_tol))
    throw std::invalid_argument("descriptors: contact_tol must be finite and >= 0");
  // Validation, the largest radius and the bounding box in one pass.
  double r_max = 0.0, r_min = std::numeric_limits<double>::infinity();
  double poison = 0.0;  // turns NaN on any non-finite coordinate
  bool radii_ok = true, materials_ok = true;
  vec3 lo{centers[0], centers[1], centers[2]}, hi = lo;
  for (std::size_t i = 0; i < n; ++i) {
    radii_ok &= radii[i] > 0.0 && radii[i] <= std::numeric_limits<double>::max();
    materials_ok &= materials[i] <= 1;
    r_max = std::max(r_max, radii[i]);
    r_min = std::min(r_min, radii[i]);
    const vec3 c{centers[3 * i], centers[3 * i + 1], centers[3 * i + 2]};
    poison += c.x * 0.0 + c.y * 0.0 + c.z * 0.0;
    lo = {std::min(lo.x, c.x), std::min(lo.y, c.y), std::min(lo.z, c.z)};
    hi = {std::max(hi.x, c.x), std::max(hi.y, c.y), std::max(hi.z, c.z)};
  }
  if (!radii_ok) throw std::invalid_argument("descriptors: radii must be finite and > 0");
  if (!materials_ok) throw std::invalid_argument("descriptors: materials must be 0 or 1");
  if (poison != 0.0) throw std::invalid_argument("descriptors: centers must be finite");
  // the contact screen works in single precision relative to the box corner
  constexpr double max_extent = 1e30;
  const double extent = std::max({hi.x - lo.x, hi.y - lo.y, hi.z - lo.z});
  if (!(extent + 2.0 * r_max <= max_extent))
    throw std::invalid_argument("descriptors: the aggregate spans more than 1e30 (nm)");
  if (!(extent <= max_extent * 2.0 * r_min))
    throw std::invalid_argument("descriptors: the aggregate spans more than 1e30 times its smallest sphere's diameter");

  descriptor_result out;
  out.n_particles = n;
  out.cn.assign(n, 0);
  out.hcn.assign(n, 0);
  const double scale = 1.0 + contact_tol;

  const std::vector<std::uint32_t> pairs = contact_pairs(centers, radii, n, scale, {lo, hi}, r_min, r_max);

  // Homo contacts join the sets first, giving the homo clusters; the hetero
  // contacts are then added to give the components of the whole graph.
  const std::size_t m = pairs.size() / 2;
  out.contacts.assign(pairs.begin(), pairs.end());
  disjoint_sets sets(n);
  std::vector<std::uint32_t> hetero_pairs(m);
  std::size_t n_hetero = 0;
  for (std::size_t p = 0; p < m; ++p) {
    const std::uint32_t i = pairs[2 * p], j = pairs[2 * p + 1];
    const int hetero = materials[i] ^ materials[j];
    ++out.cn[i];
    ++out.cn[j];
    out.hcn[i] += hetero;
    out.hcn[j] += hetero;
    hetero_pairs[n_hetero] = static_cast<std::uint32_t>(p);
    n_hetero += static_cast<std::size_t>(hetero);
    sets.unite(i, hetero ? i : j);  // a hetero contact joins nothing here
  }
  out.n_contacts = static_cast<std::int64_t>(m);
  out.n_hetero_contacts = static_cast<std::int64_t>(n_hetero);

  // One pass over the particles: homo-cluster roots, per-material sums, and
  // the volume-weighted moments about the first centre (which keeps the
  // centring below free of cancellation).  Lengths are taken in units of a
  // power of two near the largest radius (exact), so that the moments of
  // spheres of any size neither underflow nor overflow.
  const int unit = std::clamp(std::ilogb(r_max), -1000, 1000);
  const double per_unit = std::ldexp(1.0, -unit);
  const vec3 ref{centers[0], centers[1], centers[2]};
  std::int64_t hcn_ti = 0, hcn_w = 0;
  double volume = 0.0, volume_w = 0.0, self = 0.0;
  double sx = 0, sy = 0, sz = 0, sxx = 0, sxy = 0, sxz = 0, syy = 0, syz = 0, szz = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double r = radii[i] * per_unit, v = r * r * r;
    const int w = materials[i];
    const bool root = sets.is_root(static_cast<std::uint32_t>(i));
    out.n_homo_clusters_w += root & (w == 1);
    out.n_homo_clusters_ti += root & (w == 0);
    out.n_w += static_cast<std::size_t>(w);
    hcn_w += w * out.hcn[i];
    hcn_ti += (1 - w) * out.hcn[i];
    volume += v;
    volume_w += w * v;
    self += v * 0.2 * r * r;
    const double dx = (centers[3 * i] - ref.x) * per_unit, dy = (centers[3 * i + 1] - ref.y) * per_unit,
                 dz = (centers[3 * i + 2] - ref.z) * per_unit;
    sx += v * dx;
    sy += v * dy;
    sz += v * dz;
    sxx += v * dx * dx;
    sxy += v * dx * dy;
    sxz += v * dx * dz;
    syy += v * dy * dy;
    syz += v * dy * dz;
    szz += v * dz * dz;
  }
  for (std::size_t h = 0; h < n_hetero; ++h)
    sets.unite(pairs[2 * hetero_pairs[h]], pairs[2 * hetero_pairs[h] + 1]);
  out.n_components = static_cast<std::int64_t>(sets.components());

  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.n_ti = n - out.n_w;
  const double n_real = static_cast<double>(n);
  out.coordination_number = 2.0 * static_cast<double>(out.n_contacts) / n_real;
  out.hetero_coordination_number = 2.0 * static_cast<double>(out.n_hetero_contacts) / n_real;
  out.hetero_coordination_ti = out.n_ti ? static_cast<double>(hcn_ti) / static_cast<double>(out.n_ti) : nan;
  out.hetero_coordination_w = out.n_w ? static_cast<double>(hcn_w) / static_cast<double>(out.n_w) : nan;
  out.hetero_contact_fraction =
      out.n_contacts ? static_cast<double>(out.n_hetero_contacts) / static_cast<double>(out.n_contacts)
                     : nan;
  out.volume_fraction_wo3 = volume_w / volume;
  out.total_volume = 4.0 / 3.0 * 3.141592653589793 * std::scalbn(volume, 3 * unit);

  // Volume-weighted gyration tensor about the centre of volume, plus the
  // (1/5) r^2 isotropic self term of each homogeneous sphere per axis.
  const double cx = sx / volume, cy = sy / volume, cz = sz / volume;
  const double txx = sxx - volume * cx * cx, txy = sxy - volume * cx * cy, txz = sxz - volume * cx * cz;
  const double tyy = syy - volume * cy * cy, tyz = syz - volume * cy * cz, tzz = szz - volume * cz * cz;
  const double inv = 1.0 / volume;
  // in units of 2^unit; scaled back to nm and nm^2 last (squares of R_g below
  // about 1e-154 nm are smaller than any double, R_g itself is not)
  const auto ev = symmetric_eigenvalues((txx + self) * inv, txy * inv, txz * inv, (tyy + self) * inv,
                                        tyz * inv, (tzz + self) * inv);
  const double trace = ev[0] + ev[1] + ev[2];
  for (int k = 0; k < 3; ++k) out.gyration_eigenvalues[k] = std::scalbn(ev[k], 2 * unit);
  out.radius_of_gyration = std::scalbn(std::sqrt(trace), unit);
  out.asphericity = std::scalbn(ev[2] - 0.5 * (ev[0] + ev[1]), 2 * unit);
  out.acylindricity = std::scalbn(ev[1] - ev[0], 2 * unit);
  out.relative_shape_anisotropy =
      1.0 - 3.0 * (ev[0] * ev[1] + ev[1] * ev[2] + ev[2] * ev[0]) / (trace * trace);
  return out;
}

}  // namespace heteroagg
