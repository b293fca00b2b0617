// Atoms of rotated crystals cut to spheres: the input of a multislice STEM
// simulation of an aggregate.  Lengths are in Å.
//
// A crystal is a unit cell (three lattice vectors and a basis of fractional
// positions with atomic numbers).  A particle is the set of atoms of that
// infinite crystal, turned by a rotation R about the sphere centre and shifted
// by a fractional offset s, whose positions fall strictly inside the sphere:
//
//   x = centre + R * sum_k (n_k + f_k + s_k) a_k,   |x - centre| < radius,
//
// for integer n and basis positions f.  Only lattice rows that cut the sphere
// are visited, so the work is proportional to the number of atoms produced.
//
// Overlapping spheres (sintered necks): with drop_overlaps, an atom of sphere
// i that lies inside an earlier sphere j < i is dropped, so the overlap volume
// belongs to the lower-indexed sphere and holds the atoms of one crystal only.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "heteroagg/geometry.hpp"

namespace heteroagg {

// A periodic crystal.  lattice[k] is the k-th lattice vector (Cartesian, Å);
// basis[m] is a fractional position and numbers[m] its atomic number.
struct unit_cell {
  std::array<vec3, 3> lattice;
  std::vector<vec3> basis;
  std::vector<std::uint8_t> numbers;
};

// Throws std::invalid_argument if the cell is degenerate, not finite, or its
// basis and numbers differ in length or are empty.
void validate(const unit_cell& cell);

// Atoms as flat arrays, in the order they were produced.
struct atom_arrays {
  std::vector<double> positions;          // (n, 3) row-major, Å
  std::vector<std::uint8_t> numbers;      // (n,) atomic numbers
  std::vector<std::uint32_t> particles;   // (n,) index of the sphere of each atom
  std::size_t size() const { return numbers.size(); }
};

// Append the atoms of `cell`, turned by `rotation` and shifted by the
// fractional `offset`, that lie strictly inside the sphere (centre, radius);
// each gets `particle` as its sphere index.  Returns the number appended.
std::size_t fill_sphere(const unit_cell& cell, vec3 centre, double radius, const mat3& rotation,
                        vec3 offset, atom_arrays& out, std::uint32_t particle = 0);

struct fill_options {
  bool rotate = true;          // uniform random rotation per sphere (else identity)
  bool random_offset = false;  // uniform random fractional lattice offset per sphere
  bool drop_overlaps = true;   // drop atoms of sphere i inside a sphere j < i
  int threads = 0;             // worker threads, 0 = hardware threads; never changes the result
};

// Orientation of sphere `index` under `seed`: a Haar-uniform rotation (or the
// identity without options.rotate) and an offset uniform in [0, 1)^3 (or zero
// without options.random_offset).  A pure function of (seed, index, options).
struct sphere_frame {
  mat3 rotation;
  vec3 offset;
};
sphere_frame sphere_orientation(std::uint64_t seed, std::uint64_t index, const fill_options& options);

// Fill n spheres (centres (n, 3) and radii (n,), Å) with the crystals
// cells[structure[i]], each in the frame sphere_orientation(seed, i).  Atoms
// come out grouped by sphere in index order, whatever the thread count.
atom_arrays fill_aggregate(const std::vector<unit_cell>& cells, const double* centres,
                           const double* radii, const std::uint32_t* structure, std::size_t n,
                           std::uint64_t seed, const fill_options& options = {});

}  // namespace heteroagg
