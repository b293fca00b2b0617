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
#include "multislice_arguments.hpp"
#include "interruptible.hpp"
#include "potential_arguments.hpp"

namespace py = pybind11;
using namespace heteroagg;

namespace {

using bindings::f32_array;
using bindings::f64_array;
using bindings::make_grid;
using bindings::progress_relay;

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
        const grid2d grid = make_grid(gpts, sampling);
        check_grid(grid, "probe");  // before the allocation
        py::array_t<std::complex<float>> out({static_cast<py::ssize_t>(gpts.first), static_cast<py::ssize_t>(gpts.second)});
        std::complex<float>* data = out.mutable_data();
        {
          py::gil_scoped_release release;
          probe_reciprocal(grid, optics, 0.0, 0.0, data);
        }
        return out;
      },
      py::arg("gpts"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"), py::arg("aberrations"));

  m.def(
      "projected_potentials",
      [](const f64_array& positions, const bindings::i32_array& numbers, std::pair<std::size_t, std::size_t> gpts,
         std::pair<double, double> sampling, std::pair<double, double> origin, std::vector<double> slice_edges,
         const std::string& parametrization_name, bool pixel_correction, unsigned threads) {
        const bindings::potential_arguments args(positions, numbers, gpts, sampling, origin, std::move(slice_edges),
                                                 parametrization_name, pixel_correction, threads);
        // Ctrl-C stops it within a row of the tables or a slice
        std::vector<float> values = bindings::call_interruptibly(
            [&](const std::atomic<bool>& cancel) { return projected_potentials(args.request, args.form(), &cancel); });
        // hand the buffer to numpy without copying it
        const auto slices = static_cast<py::ssize_t>(args.slices());
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
         double energy, double semiangle, const bindings::aberration_tuples& aberrations,
         const bindings::detector_tuples& detectors, std::vector<std::size_t> exit_planes, std::pair<std::size_t, std::size_t> window,
         const f64_array& positions, unsigned threads, py::object progress) {
        transmission_stack stack;
        multislice_request request =
            bindings::make_request(potentials, std::move(thickness), sampling, energy, semiangle, aberrations,
                                   detectors, std::move(exit_planes), window, positions, threads, stack);
        py::array_t<float> out = bindings::result_array(request);
        float* result = out.mutable_data();
        progress_relay relay{std::move(progress)};
        // Ctrl-C stops the transmission functions within a slice, the propagation
        // within the positions in flight
        stack = bindings::call_interruptibly([&](const std::atomic<bool>& cancel) {
          return make_transmission(stack.grid, potentials.data(), stack.thickness, energy, threads, &cancel);
        });
        bindings::run_without_gil([&] { run_multislice(request, result, &progress_relay::call, &relay); });
        return out;
      },
      py::arg("potentials"), py::arg("thickness"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"),
      py::arg("aberrations"), py::arg("detectors"), py::arg("exit_planes"), py::arg("window"),
      py::arg("positions"), py::arg("threads") = 0, py::arg("progress") = py::none());
}
