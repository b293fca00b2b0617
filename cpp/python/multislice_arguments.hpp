// Conversions shared by the CPU and CUDA bindings of the multislice, so that
// heteroagg._core.multislice and heteroagg._cuda.multislice take the same
// arguments.  Conversions only, no logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "heteroagg/multislice.hpp"

namespace heteroagg::bindings {

namespace py = pybind11;

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using aberration_tuples = std::vector<std::tuple<int, int, double, double>>;
using detector_tuples = std::vector<std::tuple<double, double, std::vector<double>, std::vector<double>>>;

inline grid2d make_grid(std::pair<std::size_t, std::size_t> gpts, std::pair<double, double> sampling) {
  return grid2d{gpts.first, gpts.second, sampling.first, sampling.second};
}

// Reports progress to a Python callable and lets Ctrl-C stop the run.
struct progress_relay {
  py::object callback;
  std::size_t reported = 0;
  // Checks for Ctrl-C at every call and calls back when the count has grown.
  // Returns false, leaving the Python error set, on Ctrl-C or when the
  // callback raises; the binding then re-raises that error.
  static bool call(std::size_t done, void* context) {
    py::gil_scoped_acquire acquire;
    auto* self = static_cast<progress_relay*>(context);
    if (PyErr_CheckSignals() != 0) return false;
    if (self->callback.is_none() || done == self->reported) return true;
    self->reported = done;
    try {
      self->callback(done);
    } catch (py::error_already_set& error) {
      error.restore();
      return false;
    }
    return true;
  }
};

// A multislice request over potentials (slices, ny, nx); `stack` receives the
// grid and thicknesses (its data is left to the caller) and must outlive the
// request.
inline multislice_request make_request(std::pair<std::size_t, std::size_t> gpts, std::vector<double> thickness,
                                       std::pair<double, double> sampling, double energy, double semiangle,
                                       const aberration_tuples& aberrations, const detector_tuples& detectors,
                                       std::vector<std::size_t> exit_planes,
                                       std::pair<std::size_t, std::size_t> window, const f64_array& positions,
                                       unsigned threads, transmission_stack& stack) {
  if (positions.ndim() != 2 || positions.shape(1) != 2)
    throw std::invalid_argument("positions must have shape (n, 2)");
  stack.grid = make_grid(gpts, sampling);
  stack.thickness = std::move(thickness);
  multislice_request request;
  request.stack = &stack;
  request.optics.energy = energy;
  request.optics.semiangle = semiangle;
  for (const auto& [n, mm, c, angle] : aberrations) request.optics.aberrations.push_back({n, mm, c, angle});
  for (const auto& [inner, outer, angles, weights] : detectors)
    request.detectors.push_back({inner, outer, angles, weights});
  request.exit_planes = std::move(exit_planes);
  request.window_ny = window.first;
  request.window_nx = window.second;
  request.positions = positions.data();
  request.n_positions = static_cast<std::size_t>(positions.shape(0));
  request.threads = threads;
  return request;
}

// The same over potentials (slices, ny, nx), one thickness per slice.
inline multislice_request make_request(const f32_array& potentials, std::vector<double> thickness,
                                       std::pair<double, double> sampling, double energy, double semiangle,
                                       const aberration_tuples& aberrations, const detector_tuples& detectors,
                                       std::vector<std::size_t> exit_planes,
                                       std::pair<std::size_t, std::size_t> window, const f64_array& positions,
                                       unsigned threads, transmission_stack& stack) {
  if (potentials.ndim() != 3) throw std::invalid_argument("potentials must have shape (slices, ny, nx)");
  if (static_cast<std::size_t>(potentials.shape(0)) != thickness.size())
    throw std::invalid_argument("one thickness per potential slice is needed");
  return make_request({static_cast<std::size_t>(potentials.shape(1)), static_cast<std::size_t>(potentials.shape(2))},
                      std::move(thickness), sampling, energy, semiangle, aberrations, detectors,
                      std::move(exit_planes), window, positions, threads, stack);
}

// Runs `run` without the GIL.  When the progress relay cancelled the run, the
// Python error that stopped it (Ctrl-C, or the callback's exception) is raised.
template <class Run>
void run_without_gil(Run&& run) {
  py::gil_scoped_release release;
  try {
    run();
  } catch (const multislice_cancelled&) {
    py::gil_scoped_acquire acquire;
    if (PyErr_Occurred()) throw py::error_already_set();
    throw;
  }
}

// The (planes, detectors, positions) result array of a request.
inline py::array_t<float> result_array(const multislice_request& request) {
  return py::array_t<float>({static_cast<py::ssize_t>(request.exit_planes.size()),
                             static_cast<py::ssize_t>(request.detectors.size()),
                             static_cast<py::ssize_t>(request.n_positions)});
}

}  // namespace heteroagg::bindings
