// Conversions shared by the CPU and CUDA bindings of the projected
// potentials, so that both modules take the same arguments.  Conversions
// only, no logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "heteroagg/parametrization.hpp"
#include "heteroagg/potential.hpp"
#include "multislice_arguments.hpp"
#include "exact_integers.hpp"

namespace heteroagg::bindings {

using i32_array = exact_integers<int>;

// A potential request over the atoms, with the form factors of their
// elements; the arrays must outlive it.
struct potential_arguments {
  potential_request request;
  std::map<int, atomic_potential> elements;

  potential_arguments(const f64_array& positions, const i32_array& numbers, std::pair<std::size_t, std::size_t> gpts,
                      std::pair<double, double> sampling, std::pair<double, double> origin,
                      std::vector<double> slice_edges, const std::string& parametrization_name,
                      bool pixel_correction, unsigned threads) {
    if (positions.ndim() != 2 || positions.shape(1) != 3) throw std::invalid_argument("positions must have shape (n, 3)");
    if (numbers.ndim() != 1 || numbers.shape(0) != positions.shape(0))
      throw std::invalid_argument("numbers must have shape (n,)");
    const parametrization kind = parametrization_from_name(parametrization_name);
    for (py::ssize_t a = 0; a < numbers.shape(0); ++a) {
      const int z = numbers.data()[a];
      if (!elements.count(z)) elements.emplace(z, atomic_potential(kind, z));
    }
    request.grid = make_grid(gpts, sampling);
    request.x0 = origin.first;
    request.y0 = origin.second;
    request.slice_edges = std::move(slice_edges);
    request.atoms = {positions.data(), numbers.data(), static_cast<std::size_t>(positions.shape(0))};
    request.pixel_correction = pixel_correction;
    request.threads = threads;
  }

  projected_form_factor form() const {
    return [this](int z, double k2) { return elements.at(z).projected_potential_fourier(std::sqrt(k2)); };
  }

  std::size_t slices() const { return request.slice_edges.size() - 1; }
};

}  // namespace heteroagg::bindings
