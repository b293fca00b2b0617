// Uniform-cell neighbour search.  Two layouts of the same cubic cells:
//
// - cell_list answers point queries (the sampler's overlap checks): occupied
//   cells live in an open-addressing hash table, so memory is O(n) whatever
//   the extent of the point set (chain-like aggregates span thousands of
//   cells per axis), with the points of each cell stored contiguously.
// - sorted_cells serves all-pairs searches (the descriptors): points sorted by
//   cell index, neighbouring cells found by walking that order, no hashing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "heteroagg/geometry.hpp"

namespace heteroagg {

class cell_list {
 public:
  // Bin points 0..n-1, where position(k) returns the vec3 of point k.  `cell`
  // must be at least the largest interaction distance that will be queried.
  template <class Position>
  cell_list(std::size_t n, double cell, Position&& position) : inv_cell_(1.0 / cell) {
    if (!(cell > 0.0) || !std::isfinite(cell))
      throw std::invalid_argument("cell_list: cell size must be positive and finite");
    std::size_t slots = 16;
    while (slots < 2 * n) slots <<= 1;
    mask_ = slots - 1;
    keys_.assign(slots, empty_key);
    start_.assign(slots + 1, 0);
    std::vector<std::uint32_t> slot_of(n);
    for (std::size_t k = 0; k < n; ++k) {
      const vec3 p = position(k);
      const std::uint64_t key = pack(coord(p.x), coord(p.y), coord(p.z));
      std::size_t s = hash(key);
      while (keys_[s] != key && keys_[s] != empty_key) s = (s + 1) & mask_;
      keys_[s] = key;
      slot_of[k] = static_cast<std::uint32_t>(s);
      ++start_[s + 1];
    }
    for (std::size_t s = 0; s < slots; ++s) start_[s + 1] += start_[s];
    items_.resize(n);
    std::vector<std::uint32_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t k = 0; k < n; ++k) items_[fill[slot_of[k]]++] = static_cast<std::uint32_t>(k);
  }

  // Call visit(j) for every point j in the 27 cells around p; stop early
  // when visit returns false.
  template <class Visit>
  void for_each_near(vec3 p, Visit&& visit) const {
    const std::uint64_t centre = pack(coord(p.x), coord(p.y), coord(p.z));
    for (std::int64_t dx = -1; dx <= 1; ++dx)
      for (std::int64_t dy = -1; dy <= 1; ++dy)
        for (std::int64_t dz = -1; dz <= 1; ++dz) {
          const std::int64_t s = find(shifted(centre, dx, dy, dz));
          if (s < 0) continue;
          for (const std::uint32_t* j = begin(s); j != end(s); ++j)
            if (!visit(*j)) return;
        }
  }

 private:
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};

  const std::uint32_t* begin(std::size_t slot) const { return items_.data() + start_[slot]; }
  const std::uint32_t* end(std::size_t slot) const { return items_.data() + start_[slot + 1]; }

  // Slot of the cell with this key, or -1 when the cell is empty.
  std::int64_t find(std::uint64_t key) const {
    for (std::size_t s = hash(key);; s = (s + 1) & mask_) {
      if (keys_[s] == key) return static_cast<std::int64_t>(s);
      if (keys_[s] == empty_key) return -1;
    }
  }

  // Key of the cell displaced by (dx, dy, dz) cells from the cell `key`.
  static std::uint64_t shifted(std::uint64_t key, std::int64_t dx, std::int64_t dy, std::int64_t dz) {
    return key + (static_cast<std::uint64_t>(dx) << 42) + (static_cast<std::uint64_t>(dy) << 21) +
           static_cast<std::uint64_t>(dz);
  }

  // Cell coordinates are kept away from the packing limits so that the
  // shifted neighbours of any valid cell are valid too.
  static constexpr std::int64_t offset_ = std::int64_t{1} << 20;

  std::int64_t coord(double x) const {
    const double t = x * inv_cell_;
    if (!(std::fabs(t) < static_cast<double>(offset_ - 3)))
      throw std::range_error("cell_list: point outside the representable cell range");
    const auto c = static_cast<std::int64_t>(t);  // truncation, then floor for negatives
    return c - (t < static_cast<double>(c));
  }
  static std::uint64_t pack(std::int64_t x, std::int64_t y, std::int64_t z) {
    return (static_cast<std::uint64_t>(x + offset_) << 42) |
           (static_cast<std::uint64_t>(y + offset_) << 21) | static_cast<std::uint64_t>(z + offset_);
  }
  std::size_t hash(std::uint64_t key) const {
    key ^= key >> 30;  // splitmix64 finaliser
    key *= 0xBF58476D1CE4E5B9ull;
    key ^= key >> 27;
    key *= 0x94D049BB133111EBull;
    key ^= key >> 31;
    return static_cast<std::size_t>(key) & mask_;
  }

  double inv_cell_;
  std::size_t mask_ = 0;
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint32_t> start_;
  std::vector<std::uint32_t> items_;
};

// A static cell list for all-pairs searches: points sorted by the linear
// index of their cell, with a one-cell margin around the bounding box.  Every
// pair of neighbouring occupied cells is visited once by walking the cells in
// index order with one monotone pointer per neighbour row, so the search uses
// no hashing and no per-query lookups.
class sorted_cells {
 public:
  template <class Position>
  sorted_cells(std::size_t n, double cell, Position&& position) {
    if (!(cell > 0.0) || !std::isfinite(cell))
      throw std::invalid_argument("sorted_cells: cell size must be positive and finite");
    if (n == 0) return;
    vec3 lo = position(0), hi = lo;
    for (std::size_t k = 1; k < n; ++k) {
      const vec3 p = position(k);
      lo = {std::min(lo.x, p.x), std::min(lo.y, p.y), std::min(lo.z, p.z)};
      hi = {std::max(hi.x, p.x), std::max(hi.y, p.y), std::max(hi.z, p.z)};
    }
    const double inv = 1.0 / cell;
    auto extent = [&](double a, double b) {
      const double cells = std::floor((b - a) * inv) + 3.0;  // margin of one cell each side
      if (!(cells < 2097152.0)) throw std::range_error("sorted_cells: point set too extended");
      return static_cast<std::uint64_t>(cells);
    };
    const std::uint64_t ny = extent(lo.y, hi.y), nz = extent(lo.z, hi.z);
    stride_y_ = nz;
    stride_x_ = ny * nz;
    std::vector<std::uint64_t> keys(n);
    std::uint64_t max_key = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const vec3 p = position(k);
      // non-negative offsets: truncation is floor (int64 converts faster than uint64)
      const auto cx = static_cast<std::int64_t>((p.x - lo.x) * inv) + 1;
      const auto cy = static_cast<std::int64_t>((p.y - lo.y) * inv) + 1;
      const auto cz = static_cast<std::int64_t>((p.z - lo.z) * inv) + 1;
      keys[k] = static_cast<std::uint64_t>(cx) * stride_x_ + static_cast<std::uint64_t>(cy) * stride_y_ +
                static_cast<std::uint64_t>(cz);
      max_key = std::max(max_key, keys[k]);
    }
    sort_by_key(keys, max_key);
    cell_keys_.reserve(n);
    cell_begin_.reserve(n + 1);
    for (std::size_t k = 0; k < n; ++k)
      if (k == 0 || keys[k] != keys[k - 1]) {
        cell_keys_.push_back(keys[k]);
        cell_begin_.push_back(static_cast<std::uint32_t>(k));
      }
    cell_begin_.push_back(static_cast<std::uint32_t>(n));
  }

  std::size_t cell_count() const { return cell_keys_.size(); }
  // Cell c holds the sorted positions [begin(c), end(c)); order()[k] is the
  // original index of sorted position k.
  std::uint32_t begin(std::size_t c) const { return cell_begin_[c]; }
  std::uint32_t end(std::size_t c) const { return cell_begin_[c + 1]; }
  const std::vector<std::uint32_t>& order() const { return order_; }

  // Call visit(c, d) for every pair of neighbouring occupied cells with
  // c <= d in index order (c == d for a cell with itself); each pair once.
  template <class Visit>
  void for_each_cell_pair(Visit&& visit) const {
    // The forward half of the 27-cell stencil is five rows of consecutive
    // indices: (0,0,+1), (0,+1,-1..+1) and (+1,-1..+1,-1..+1).
    const std::uint64_t row_start[5] = {1, stride_y_ - 1, stride_x_ - stride_y_ - 1, stride_x_ - 1,
                                        stride_x_ + stride_y_ - 1};
    const std::uint64_t row_length[5] = {1, 3, 3, 3, 3};
    std::size_t pointer[5] = {0, 0, 0, 0, 0};
    const std::size_t cells = cell_keys_.size();
    for (std::size_t c = 0; c < cells; ++c) {
      visit(c, c);
      const std::uint64_t key = cell_keys_[c];
      for (int r = 0; r < 5; ++r) {
        const std::uint64_t first = key + row_start[r], last = first + row_length[r];
        std::size_t& d = pointer[r];
        while (d < cells && cell_keys_[d] < first) ++d;
        for (std::size_t e = d; e < cells && cell_keys_[e] < last; ++e) visit(c, e);
      }
    }
  }

 private:
  // LSD radix sort of (key, index) by key, 8 bits per pass; sorts `keys` in
  // place and leaves the matching point order in order_.
  void sort_by_key(std::vector<std::uint64_t>& keys, std::uint64_t max_key) {
    const std::size_t n = keys.size();
    order_.resize(n);
    for (std::size_t k = 0; k < n; ++k) order_[k] = static_cast<std::uint32_t>(k);
    std::vector<std::uint64_t> key_tmp(n);
    std::vector<std::uint32_t> order_tmp(n);
    constexpr int bits = 8;
    constexpr std::size_t buckets = std::size_t{1} << bits;
    std::vector<std::uint32_t> count(buckets);
    for (int shift = 0; shift == 0 || (max_key >> shift) != 0; shift += bits) {
      std::fill(count.begin(), count.end(), 0u);
      for (std::size_t k = 0; k < n; ++k) ++count[(keys[k] >> shift) & (buckets - 1)];
      std::uint32_t sum = 0;
      for (auto& c : count) {
        const std::uint32_t here = c;
        c = sum;
        sum += here;
      }
      for (std::size_t k = 0; k < n; ++k) {
        const std::uint32_t slot = count[(keys[k] >> shift) & (buckets - 1)]++;
        key_tmp[slot] = keys[k];
        order_tmp[slot] = order_[k];
      }
      keys.swap(key_tmp);
      order_.swap(order_tmp);
    }
  }

  std::uint64_t stride_x_ = 0, stride_y_ = 0;  // index steps of one cell in x and y (z: 1)
  std::vector<std::uint32_t> order_;
  std::vector<std::uint64_t> cell_keys_;
  std::vector<std::uint32_t> cell_begin_;
};

}  // namespace heteroagg
