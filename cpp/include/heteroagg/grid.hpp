// Uniform-cell neighbour search with hashed cells.
//
// Space is cut into cubic cells of edge `cell`.  Occupied cells live in an
// open-addressing hash table, so memory is O(n) whatever the extent of the
// point set (chain-like aggregates span thousands of cells per axis), and the
// points of each cell are stored contiguously (CSR layout, ascending index).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "heteroagg/geometry.hpp"

namespace heteroagg {

class cell_list {
 public:
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};

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

  std::size_t slot_count() const { return keys_.size(); }
  bool occupied(std::size_t slot) const { return keys_[slot] != empty_key; }
  std::uint64_t key(std::size_t slot) const { return keys_[slot]; }
  // Position of the slot's first point in the CSR order of all points.
  std::size_t first(std::size_t slot) const { return start_[slot]; }
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

}  // namespace heteroagg
