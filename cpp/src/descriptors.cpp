#include "heteroagg/descriptors.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "heteroagg/geometry.hpp"
#include "heteroagg/grid.hpp"

namespace heteroagg {

namespace {

// Union-find with union by size and path halving; counts its components.
class disjoint_sets {
 public:
  explicit disjoint_sets(std::size_t n) : parent_(n), size_(n, 1), components_(n) {
    std::iota(parent_.begin(), parent_.end(), 0u);
  }
  std::uint32_t find(std::uint32_t x) {
    while (parent_[x] != x) x = parent_[x] = parent_[parent_[x]];
    return x;
  }
  void unite(std::uint32_t a, std::uint32_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
    --components_;
  }
  std::size_t components() const { return components_; }

 private:
  std::vector<std::uint32_t> parent_;
  std::vector<std::uint32_t> size_;
  std::size_t components_;
};

}  // namespace

std::array<double, 3> symmetric_eigenvalues(double a00, double a01, double a02, double a11,
                                            double a12, double a22) {
  // Trigonometric solution of the characteristic cubic (Smith, CACM 1961).
  const double off = a01 * a01 + a02 * a02 + a12 * a12;
  const double q = (a00 + a11 + a22) / 3.0;
  if (off <= 1e-300) {
    std::array<double, 3> d{a00, a11, a22};
    std::sort(d.begin(), d.end());
    return d;
  }
  const double b00 = a00 - q, b11 = a11 - q, b22 = a22 - q;
  const double p = std::sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * off) / 6.0);
  const double det = b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) +
                     a02 * (a01 * a12 - b11 * a02);
  const double r = std::clamp(det / (2.0 * p * p * p), -1.0, 1.0);
  const double phi = std::acos(r) / 3.0;
  const double l3 = q + 2.0 * p * std::cos(phi);
  const double l1 = q + 2.0 * p * std::cos(phi + 2.0943951023931957);
  const double l2 = 3.0 * q - l1 - l3;
  return {l1, l2, l3};
}

descriptor_result compute_descriptors(const double* centers, const double* radii,
                                      const std::uint8_t* materials, std::size_t n,
                                      double contact_tol) {
  if (n == 0) throw std::invalid_argument("descriptors: the aggregate has no particles");
  if (!(contact_tol >= 0.0) || !std::isfinite(contact_tol))
    throw std::invalid_argument("descriptors: contact_tol must be finite and >= 0");
  double r_max = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!(radii[i] > 0.0) || !std::isfinite(radii[i]))
      throw std::invalid_argument("descriptors: radii must be finite and > 0");
    if (materials[i] > 1) throw std::invalid_argument("descriptors: materials must be 0 or 1");
    for (int k = 0; k < 3; ++k)
      if (!std::isfinite(centers[3 * i + k]))
        throw std::invalid_argument("descriptors: centers must be finite");
    r_max = std::max(r_max, radii[i]);
  }

  descriptor_result out;
  out.n_particles = n;
  out.cn.assign(n, 0);
  out.hcn.assign(n, 0);

  const double scale = 1.0 + contact_tol;
  auto at = [&](std::size_t i) { return vec3{centers[3 * i], centers[3 * i + 1], centers[3 * i + 2]}; };
  const sorted_cells grid(n, 2.0 * r_max * scale, at);
  const std::vector<std::uint32_t>& order = grid.order();

  // Coordinates in cell order (contiguous per cell) and, per occupied cell,
  // the box around its centres and its largest radius, to skip far cell pairs.
  std::vector<double> px(n), py(n), pz(n), pr(n);
  const std::size_t cells = grid.cell_count();
  std::vector<double> box(7 * cells);
  for (std::size_t c = 0; c < cells; ++c) {
    double* b = &box[7 * c];
    b[0] = b[1] = b[2] = std::numeric_limits<double>::infinity();
    b[3] = b[4] = b[5] = -std::numeric_limits<double>::infinity();
    b[6] = 0.0;
    for (std::size_t k = grid.begin(c); k < grid.end(c); ++k) {
      const std::uint32_t i = order[k];
      px[k] = centers[3 * i];
      py[k] = centers[3 * i + 1];
      pz[k] = centers[3 * i + 2];
      pr[k] = radii[i];
      b[0] = std::min(b[0], px[k]);
      b[1] = std::min(b[1], py[k]);
      b[2] = std::min(b[2], pz[k]);
      b[3] = std::max(b[3], px[k]);
      b[4] = std::max(b[4], py[k]);
      b[5] = std::max(b[5], pz[k]);
      b[6] = std::max(b[6], pr[k]);
    }
  }

  std::vector<std::uint32_t> first, second;
  first.reserve(2 * n);
  second.reserve(2 * n);
  auto test = [&](std::size_t k, std::size_t l) {
    const double dx = px[k] - px[l], dy = py[k] - py[l], dz = pz[k] - pz[l];
    const double reach = (pr[k] + pr[l]) * scale;
    if (dx * dx + dy * dy + dz * dz <= reach * reach) {
      first.push_back(std::min(order[k], order[l]));
      second.push_back(std::max(order[k], order[l]));
    }
  };
  grid.for_each_cell_pair([&](std::size_t c, std::size_t d) {
    if (c == d) {
      for (std::size_t k = grid.begin(c); k < grid.end(c); ++k)
        for (std::size_t l = k + 1; l < grid.end(c); ++l) test(k, l);
      return;
    }
    const double* bc = &box[7 * c];
    const double* bd = &box[7 * d];
    const double gx = std::max(0.0, std::max(bd[0] - bc[3], bc[0] - bd[3]));
    const double gy = std::max(0.0, std::max(bd[1] - bc[4], bc[1] - bd[4]));
    const double gz = std::max(0.0, std::max(bd[2] - bc[5], bc[2] - bd[5]));
    const double reach = (bc[6] + bd[6]) * scale;
    if (gx * gx + gy * gy + gz * gz > reach * reach) return;
    for (std::size_t k = grid.begin(c); k < grid.end(c); ++k)
      for (std::size_t l = grid.begin(d); l < grid.end(d); ++l) test(k, l);
  });

  // Order the pairs by (i, j) with a counting sort on i.
  std::vector<std::uint32_t> offset(n + 1, 0);
  for (const std::uint32_t i : first) ++offset[i + 1];
  for (std::size_t i = 0; i < n; ++i) offset[i + 1] += offset[i];
  std::vector<std::uint32_t> partner(first.size());
  {
    std::vector<std::uint32_t> fill(offset.begin(), offset.end() - 1);
    for (std::size_t k = 0; k < first.size(); ++k) partner[fill[first[k]]++] = second[k];
  }
  out.contacts.resize(2 * first.size());
  disjoint_sets homo(n), all(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::uint32_t k = offset[i] + 1; k < offset[i + 1]; ++k)  // insertion sort: few partners
      for (std::uint32_t m = k; m > offset[i] && partner[m - 1] > partner[m]; --m)
        std::swap(partner[m - 1], partner[m]);
    for (std::uint32_t k = offset[i]; k < offset[i + 1]; ++k) {
      const std::uint32_t j = partner[k];
      out.contacts[2 * k] = static_cast<std::int64_t>(i);
      out.contacts[2 * k + 1] = static_cast<std::int64_t>(j);
      ++out.cn[i];
      ++out.cn[j];
      all.unite(static_cast<std::uint32_t>(i), j);
      if (materials[i] != materials[j]) {
        ++out.hcn[i];
        ++out.hcn[j];
        ++out.n_hetero_contacts;
      } else {
        homo.unite(static_cast<std::uint32_t>(i), j);
      }
    }
  }
  out.n_contacts = static_cast<std::int64_t>(out.contacts.size() / 2);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  double hcn_ti = 0.0, hcn_w = 0.0, volume = 0.0, volume_w = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = radii[i] * radii[i] * radii[i];
    volume += v;
    if (materials[i] == 1) {
      ++out.n_w;
      hcn_w += out.hcn[i];
      volume_w += v;
    } else {
      ++out.n_ti;
      hcn_ti += out.hcn[i];
    }
    if (homo.find(static_cast<std::uint32_t>(i)) == i)
      (materials[i] == 1 ? out.n_homo_clusters_w : out.n_homo_clusters_ti)++;
  }
  out.n_components = static_cast<std::int64_t>(all.components());
  out.coordination_number = 2.0 * static_cast<double>(out.n_contacts) / static_cast<double>(n);
  out.hetero_coordination_number =
      2.0 * static_cast<double>(out.n_hetero_contacts) / static_cast<double>(n);
  out.hetero_coordination_ti = out.n_ti ? hcn_ti / static_cast<double>(out.n_ti) : nan;
  out.hetero_coordination_w = out.n_w ? hcn_w / static_cast<double>(out.n_w) : nan;
  out.hetero_contact_fraction =
      out.n_contacts ? static_cast<double>(out.n_hetero_contacts) / static_cast<double>(out.n_contacts)
                     : nan;
  out.volume_fraction_wo3 = volume_w / volume;
  out.total_volume = 4.0 / 3.0 * 3.141592653589793 * volume;

  // Volume-weighted gyration tensor about the centre of volume, plus the
  // (1/5) r^2 isotropic self term of each homogeneous sphere per axis.
  vec3 c;
  for (std::size_t i = 0; i < n; ++i) c = c + (radii[i] * radii[i] * radii[i]) * at(i);
  c = (1.0 / volume) * c;
  double txx = 0, txy = 0, txz = 0, tyy = 0, tyz = 0, tzz = 0, self = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double m = radii[i] * radii[i] * radii[i];
    const vec3 d = at(i) - c;
    txx += m * d.x * d.x;
    txy += m * d.x * d.y;
    txz += m * d.x * d.z;
    tyy += m * d.y * d.y;
    tyz += m * d.y * d.z;
    tzz += m * d.z * d.z;
    self += m * 0.2 * radii[i] * radii[i];
  }
  const double inv = 1.0 / volume;
  const auto ev = symmetric_eigenvalues((txx + self) * inv, txy * inv, txz * inv,
                                        (tyy + self) * inv, tyz * inv, (tzz + self) * inv);
  out.gyration_eigenvalues = ev;
  const double trace = ev[0] + ev[1] + ev[2];
  out.radius_of_gyration = std::sqrt(trace);
  out.asphericity = ev[2] - 0.5 * (ev[0] + ev[1]);
  out.acylindricity = ev[1] - ev[0];
  out.relative_shape_anisotropy =
      1.0 - 3.0 * (ev[0] * ev[1] + ev[1] * ev[2] + ev[2] * ev[0]) / (trace * trace);
  return out;
}

}  // namespace heteroagg
