// Projected potentials of atom slices, built by FFT superposition.
//
// Each element's atoms are placed on the grid as bilinear delta functions,
// Fourier transformed, multiplied by the element's projected scattering
// factor (the 2D Fourier transform of its infinitely projected potential)
// and divided by abTEM's pixel correction; one inverse FFT per slice then
// gives the slice's projected potential in V·Å.  This is the infinite
// projection of Van den Broek et al., Ultramicroscopy 158 (2015) 89, as
// abTEM computes it, so the two codes can be compared pixel by pixel.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <stdexcept>
#include <vector>

#include "heteroagg/multislice.hpp"

namespace heteroagg {

// F(k^2) for element z: the projected potential of one atom is
// V_z(r) = ∫ F(|k|^2) exp(2 pi i k·r) d^2k (V·Å for k in 1/Å).
using projected_form_factor = std::function<double(int z, double k2)>;

struct slice_atoms {
  const double* positions = nullptr;  // (n, 3) Å
  const int* numbers = nullptr;       // atomic numbers
  std::size_t n = 0;
};

struct potential_request {
  grid2d grid;
  double x0 = 0.0, y0 = 0.0;       // Å at pixel (0, 0)
  std::vector<double> slice_edges;  // z (Å), strictly increasing, slices + 1 values
  // Atoms below the first edge go to the first slice, atoms at or above the
  // last edge to the last one.  Lateral positions wrap periodically.
  slice_atoms atoms;
  bool pixel_correction = true;  // divide by abTEM's sinc pixel factor
  unsigned threads = 0;
};

// F(k^2) / (pixel correction * pixel area) on the request's FFT grid, one
// table (ny, nx) per element of its atoms: what the FFT superposition
// multiplies each element's deltas by.
std::map<int, std::vector<float>> element_factor_tables(const potential_request& request,
                                                        const projected_form_factor& form,
                                                        const std::atomic<bool>* cancel = nullptr);

// Checks the request (grid, finite positions, slice edges) and groups its
// atoms by slice and then by element.
std::vector<std::map<int, std::vector<std::size_t>>> atoms_by_slice(const potential_request& request);

// Thrown by projected_potentials and element_factor_tables once `cancel` is set.
struct potential_cancelled : std::runtime_error {
  potential_cancelled() : std::runtime_error("projected potentials cancelled") {}
};

// Projected potential of every slice, (slices, ny, nx) float32 in V·Å.  A
// `cancel` flag set from another thread stops the work within a row of the
// tables or a slice.
std::vector<float> projected_potentials(const potential_request& request, const projected_form_factor& form,
                                        const std::atomic<bool>* cancel = nullptr);

// Slice of each atom (0-based) for the given edges, with the rules above.
std::vector<std::size_t> slice_of_atoms(const slice_atoms& atoms, const std::vector<double>& edges);

}  // namespace heteroagg
