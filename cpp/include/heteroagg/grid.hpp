// Uniform-cell neighbour search, in two layouts:
//
// - cell_list answers point queries (the sampler's overlap checks): cubic
//   cells whose occupied ones live in an open-addressing hash table, so
//   memory is O(n) whatever the extent of the point set (chain-like
//   aggregates span thousands of cells per axis), with the points of each
//   cell stored contiguously.
// - column_grid serves all-pairs searches (the descriptors): a dense 2D grid
//   over the two longest axes, each cell a column through the third.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "heteroagg/geometry.hpp"

namespace heteroagg {

class cell_list {
 public:
  // Bin points 0..n-1, where position(k) returns the vec3 of point k.  `cell`
  // must exceed the largest interaction distance that will be queried by more
  // than the rounding of coordinates / cell (a relative 1e-9 is ample): two
  // points exactly `cell` apart can be binned two cells apart.
  //
  // With `ids`, the k-th point is reported as ids[k] instead of k.
  template <class Position>
  cell_list(std::size_t n, double cell, Position&& position, const std::uint32_t* ids = nullptr)
      : inv_cell_(1.0 / cell) {
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
    for (std::size_t k = 0; k < n; ++k)
      items_[fill[slot_of[k]]++] = ids != nullptr ? ids[k] : static_cast<std::uint32_t>(k);
  }

  std::size_t size() const { return items_.size(); }

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

// All-pairs search on columns.  The two axes of largest extent are cut into
// a dense 2D grid: strips of width h along the first, each split into cells
// of width h/m along the second (the sweep axis), and the points are sorted
// by cell with one counting sort.  Two points at most h apart lie in the same
// or adjacent strips and at most m cells apart along the sweep axis, and the
// cells of a strip are consecutive in the sorted order, so the partners of a
// point lie in two contiguous runs: ahead of it in its own strip up to m cells
// on, and m cells either side in the next strip.  Runs are read with plain
// vector loads, without hashing or per-cell bookkeeping.
class column_grid {
 public:
  // `xyz` holds n points as rows of three coordinates.
  column_grid(const double* xyz, std::size_t n, double h) : column_grid(xyz, n, h, bounds(xyz, n)) {}

  // The same, given the corners of the points' bounding box.  Coordinates
  // must be finite; points outside `box` are binned into its edge cells.
  column_grid(const double* xyz, std::size_t n, double h, const std::array<vec3, 2>& box) {
    if (!(h > 0.0) || !std::isfinite(h))
      throw std::invalid_argument("column_grid: width must be positive and finite");
    if (n > (std::size_t{1} << 28)) throw std::length_error("column_grid: too many points");
    if (n == 0) return;
    lo_ = box[0];
    hi_ = box[1];
    const double lo[3] = {lo_.x, lo_.y, lo_.z};
    const double extent[3] = {hi_.x - lo_.x, hi_.y - lo_.y, hi_.z - lo_.z};
    int axes[3] = {0, 1, 2};
    std::sort(axes, axes + 3, [&](int a, int b) { return extent[a] > extent[b]; });
    const int strip_axis = axes[0], sweep_axis = axes[1];
    // Widths at least h (strips) and h/m (cells); both grow together when the
    // dense grid would exceed max_cells, which only adds candidates.
    const double max_cells = 4.0 * static_cast<double>(n) + 64.0;  // also keeps indices in 32 bits
    // Rounding in (x - lo) / width can put two points exactly h apart two strips
    // apart; a width wider than h by more than that rounding keeps them adjacent.
    double strip_width = h + 8.0 * std::numeric_limits<double>::epsilon() * (extent[strip_axis] + h);
    for (;;) {
      strips_ = static_cast<std::uint32_t>(std::min(max_cells, extent[strip_axis] / strip_width) + 1);
      columns_ = static_cast<std::uint32_t>(std::min(max_cells, extent[sweep_axis] * span / strip_width) + 1);
      if (static_cast<double>(strips_) * static_cast<double>(columns_) <= max_cells) break;
      strip_width *= 1.5;
    }
    strip_axis_ = strip_axis;
    sweep_axis_ = sweep_axis;
    inv_strip_ = 1.0 / strip_width;
    inv_cell_ = span / strip_width;
    const double inv_strip = inv_strip_, inv_cell = inv_cell_;
    const double last_strip = strips_ - 1.0, last_column = columns_ - 1.0;

    // Counting sort by cell: count, inclusive prefix sums (cell ends), then
    // fill each cell from its end backwards, which leaves begin_ at the
    // starts.  Neighbouring input points often share a cell, so both passes
    // walk the two halves of the input in step, keeping two independent
    // chains of counter updates in flight; the order within a cell is
    // therefore not the input order, which the pair search does not need.
    // begin_ has one more strip of empty cells past the last, so the runs of
    // the last strip into its "next" strip are empty without a test.
    // Scratch and result arrays are left uninitialised: every entry is written.
    const std::unique_ptr<std::uint32_t[]> cell_of(new std::uint32_t[n]), column_of(new std::uint32_t[n]);
    begin_.assign((std::size_t{strips_} + 1) * columns_ + 1, 0);
    auto bin = [&](std::size_t k) {
      // offsets from the lower corner: truncation is floor; the clamps guard the edges
      const double s = std::clamp((xyz[3 * k + strip_axis] - lo[strip_axis]) * inv_strip, 0.0, last_strip);
      const double c = std::clamp((xyz[3 * k + sweep_axis] - lo[sweep_axis]) * inv_cell, 0.0, last_column);
      column_of[k] = static_cast<std::uint32_t>(static_cast<std::int64_t>(c));
      cell_of[k] = static_cast<std::uint32_t>(static_cast<std::int64_t>(s)) * columns_ + column_of[k];
      ++begin_[cell_of[k]];
    };
    const std::size_t half = n / 2;
    for (std::size_t k = 0; k < half; ++k) {
      bin(k);
      bin(half + k);
    }
    if (n % 2) bin(n - 1);
    std::uint32_t sum = 0;
    for (auto& b : begin_) b = sum += b;
    order_.reset(new std::uint32_t[n]);
    cell_.reset(new std::uint32_t[n]);
    column_.reset(new std::uint32_t[n]);
    auto place = [&](std::size_t k) {
      const std::uint32_t slot = --begin_[cell_of[k]];
      order_[slot] = static_cast<std::uint32_t>(k);
      cell_[slot] = cell_of[k];
      column_[slot] = column_of[k];
    };
    if (n % 2) place(n - 1);
    for (std::size_t k = half; k-- > 0;) {
      place(k);
      place(half + k);
    }
  }

  // Corners of the bounding box of n >= 1 points.
  static std::array<vec3, 2> bounds(const double* xyz, std::size_t n) {
    vec3 lo{xyz[0], xyz[1], xyz[2]}, hi = lo;
    for (std::size_t k = 1; k < n; ++k) {
      lo = {std::min(lo.x, xyz[3 * k]), std::min(lo.y, xyz[3 * k + 1]), std::min(lo.z, xyz[3 * k + 2])};
      hi = {std::max(hi.x, xyz[3 * k]), std::max(hi.y, xyz[3 * k + 1]), std::max(hi.z, xyz[3 * k + 2])};
    }
    return {lo, hi};
  }

  // order()[k] is the original index of the point at sorted position k.
  const std::uint32_t* order() const { return order_.get(); }
  // Corners of the bounding box of the points.
  vec3 lower() const { return lo_; }
  vec3 upper() const { return hi_; }

  // The partners of the point at sorted position k: every pair of points
  // at most h apart is offered exactly once, as (k, l) with k < l < ahead or
  // with l in [next_first, next_last).
  struct runs {
    std::uint32_t ahead, next_first, next_last;
  };
  runs runs_of(std::uint32_t k) const {
    const std::uint32_t column = column_[k], row = cell_[k] - column;
    const std::uint32_t from = row + (column >= span ? column - span : 0);
    const std::uint32_t to = row + std::min(column + span + 1, columns_);
    return {begin_[to], begin_[from + columns_], begin_[to + columns_]};
  }

  // Calls visit(first, last) for runs of sorted positions that together hold
  // every point whose coordinates along the grid's two axes lie within
  // `reach` of p's (and points somewhat farther): one run per strip, from the
  // first to the last column in range.  The range is widened by one cell each
  // way, which covers the rounding of its bounds.
  template <class Visit>
  void for_each_run_near(vec3 p, double reach, Visit&& visit) const {
    if (strips_ == 0) return;
    const double lo[3] = {lo_.x, lo_.y, lo_.z}, at[3] = {p.x, p.y, p.z};
    auto index = [](double offset, double inv, std::uint32_t count) {
      const double last = count - 1.0;
      return static_cast<std::uint32_t>(static_cast<std::int64_t>(std::clamp(offset * inv, 0.0, last)));
    };
    const double s = at[strip_axis_] - lo[strip_axis_], c = at[sweep_axis_] - lo[sweep_axis_];
    const std::uint32_t s_first = index(s - reach, inv_strip_, strips_), s_last = index(s + reach, inv_strip_, strips_);
    const std::uint32_t c_first = index(c - reach, inv_cell_, columns_), c_last = index(c + reach, inv_cell_, columns_);
    const std::uint32_t from = c_first > 0 ? c_first - 1 : 0, to = std::min(c_last + 2, columns_);
    for (std::uint32_t strip = s_first > 0 ? s_first - 1 : 0; strip <= std::min(s_last + 1, strips_ - 1); ++strip)
      visit(begin_[strip * columns_ + from], begin_[strip * columns_ + to]);
  }

 private:
  static constexpr std::uint32_t span = 2;  // m: cells per strip width along the sweep axis

  vec3 lo_, hi_;
  int strip_axis_ = 0, sweep_axis_ = 1;
  double inv_strip_ = 0.0, inv_cell_ = 0.0;
  std::uint32_t strips_ = 0, columns_ = 0;
  std::vector<std::uint32_t> begin_;  // first sorted position of each cell, then n
  std::unique_ptr<std::uint32_t[]> order_;
  std::unique_ptr<std::uint32_t[]> cell_;    // cell of each sorted position
  std::unique_ptr<std::uint32_t[]> column_;  // and its column along the sweep axis
};

}  // namespace heteroagg
