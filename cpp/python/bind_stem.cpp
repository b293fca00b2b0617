// pybind11 bindings of the multislice engine: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/complex.h>
#include <pybind11/stl.h>

#include <cmath>
#include <complex>
#include <map>

#include <string>
#include <tuple>
#include <vector>

#include "heteroagg/multislice.hpp"
#include "heteroagg/parametrization.hpp"
#include "heteroagg/potential.hpp"

namespace py = pybind11;
using namespace heteroagg;

namespace {

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i32_array = py::array_t<int, py::array::c_style | py::array::forcecast>;

grid2d make_grid(std::pair<std::size_t, std::size_t> gpts, std::pair<double, double> sampling) {
  return grid2d{gpts.first, gpts.second, sampling.first, sampling.second};
}

// Reports progress to a Python callable and lets Ctrl-C stop the run.
struct progress_relay {
  py::object callback;
  // Returns false, leaving the Python error set, on Ctrl-C or when the
  // callback raises; the binding then re-raises that error.
  static bool call(std::size_t done, void* context) {
    py::gil_scoped_acquire acquire;
    auto* self = static_cast<progress_relay*>(context);
    if (PyErr_CheckSignals() != 0) return false;
    if (self->callback.is_none()) return true;
    try {
      self->callback(done);
    } catch (py::error_already_set& error) {
      error.restore();
      return false;
    }
    return true;
  }
};

}  // namespace

void bind_stem(py::module_& m) {
  m.def("electron_wavelength", &electron_wavelength, py::arg("energy"));
  m.def("interaction_constant", &interaction_constant, py::arg("energy"));
  m.def(
      "band_limit_angle",
      [](std::pair<double, double> sampling, double energy) {
        return band_limit_angle(grid2d{1, 1, sampling.first, sampling.second}, electron_wavelength(energy));
      },
      py::arg("sampling"), py::arg("energy"));

  m.def(
      "probe_reciprocal",
      [](std::pair<std::size_t, std::size_t> gpts, std::pair<double, double> sampling, double energy,
         double semiangle, const std::vector<std::tuple<int, int, double, double>>& aberrations) {
        probe_optics optics{energy, semiangle, {}};
        for (const auto& [n, mm, c, angle] : aberrations) optics.aberrations.push_back({n, mm, c, angle});
        py::array_t<std::complex<float>> out({static_cast<py::ssize_t>(gpts.first), static_cast<py::ssize_t>(gpts.second)});
        probe_reciprocal(make_grid(gpts, sampling), optics, 0.0, 0.0, out.mutable_data());
        return out;
      },
      py::arg("gpts"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"), py::arg("aberrations"));

  m.def(
      "projected_potentials",
      [](const f64_array& positions, const i32_array& numbers, std::pair<std::size_t, std::size_t> gpts,
         std::pair<double, double> sampling, std::pair<double, double> origin, std::vector<double> slice_edges,
         const std::string& parametrization_name, bool pixel_correction, unsigned threads) {
        if (positions.ndim() != 2 || positions.shape(1) != 3)
          throw std::invalid_argument("positions must have shape (n, 3)");
        if (numbers.ndim() != 1 || numbers.shape(0) != positions.shape(0))
          throw std::invalid_argument("numbers must have shape (n,)");
        const parametrization kind = parametrization_from_name(parametrization_name);
        std::map<int, atomic_potential> elements;
        for (py::ssize_t a = 0; a < numbers.shape(0); ++a) {
          const int z = numbers.data()[a];
          if (!elements.count(z)) elements.emplace(z, atomic_potential(kind, z));
        }
        potential_request request;
        request.grid = make_grid(gpts, sampling);
        request.x0 = origin.first;
        request.y0 = origin.second;
        request.slice_edges = std::move(slice_edges);
        request.atoms = {positions.data(), numbers.data(), static_cast<std::size_t>(positions.shape(0))};
        request.pixel_correction = pixel_correction;
        request.threads = threads;
        std::vector<float> values;
        {
          py::gil_scoped_release release;
          values = projected_potentials(
              request, [&elements](int z, double k2) {
                return elements.at(z).projected_potential_fourier(std::sqrt(k2));
              });
        }
        // hand the buffer to numpy without copying it
        const auto slices = static_cast<py::ssize_t>(request.slice_edges.size() - 1);
        auto* owner = new std::vector<float>(std::move(values));
        py::capsule free_owner(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
        return py::array_t<float>(
            {slices, static_cast<py::ssize_t>(gpts.first), static_cast<py::ssize_t>(gpts.second)}, owner->data(),
            free_owner);
      },
      py::arg("positions"), py::arg("numbers"), py::arg("gpts"), py::arg("sampling"), py::arg("origin"),
      py::arg("slice_edges"), py::arg("parametrization"), py::arg("pixel_correction") = true,
      py::arg("threads") = 0);

  m.def(
      "multislice",
      [](const f32_array& potentials, std::vector<double> thickness, std::pair<double, double> sampling,
         double energy, double semiangle, const std::vector<std::tuple<int, int, double, double>>& aberrations,
         const std::vector<std::tuple<double, double, std::vector<double>, std::vector<double>>>& detectors,
         std::vector<std::size_t> exit_planes, std::pair<std::size_t, std::size_t> window,
         const f64_array& positions, unsigned threads, py::object progress) {
        if (potentials.ndim() != 3) throw std::invalid_argument("potentials must have shape (slices, ny, nx)");
        if (static_cast<std::size_t>(potentials.shape(0)) != thickness.size())
          throw std::invalid_argument("one thickness per potential slice is needed");
        if (positions.ndim() != 2 || positions.shape(1) != 2)
          throw std::invalid_argument("positions must have shape (n, 2)");
        const grid2d grid = make_grid(
            {static_cast<std::size_t>(potentials.shape(1)), static_cast<std::size_t>(potentials.shape(2))}, sampling);
        multislice_request request;
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
        py::array_t<float> out({static_cast<py::ssize_t>(request.exit_planes.size()),
                                static_cast<py::ssize_t>(request.detectors.size()),
                                static_cast<py::ssize_t>(request.n_positions)});
        float* result = out.mutable_data();
        progress_relay relay{std::move(progress)};
        {
          py::gil_scoped_release release;
          const transmission_stack stack = make_transmission(grid, potentials.data(), thickness, energy, threads);
          request.stack = &stack;
          try {
            run_multislice(request, result, &progress_relay::call, &relay);
          } catch (const multislice_cancelled&) {
            py::gil_scoped_acquire acquire;
            if (PyErr_Occurred()) throw py::error_already_set();
            throw;
          }
        }
        return out;
      },
      py::arg("potentials"), py::arg("thickness"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"),
      py::arg("aberrations"), py::arg("detectors"), py::arg("exit_planes"), py::arg("window"),
      py::arg("positions"), py::arg("threads") = 0, py::arg("progress") = py::none());
}
