// pybind11 bindings of the CUDA kernels: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "heteroagg_cuda/cufft_library.hpp"
#include "heteroagg_cuda/multislice.hpp"
#include "heteroagg_cuda/rng.hpp"
#include "multislice_arguments.hpp"

namespace py = pybind11;
using namespace heteroagg;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "heteroagg CUDA kernels";
  m.def("device_count", []() {
    std::string message;
    const int count = heteroagg::cuda::device_count(message);
    return py::make_tuple(count, message);
  });
  m.def(
      "uniform",
      [](std::uint64_t seed, std::uint64_t stream, py::ssize_t n) {
        if (n < 0) throw std::invalid_argument("n must be >= 0");
        py::array_t<double> out(n);
        double* data = out.mutable_data();
        {
          py::gil_scoped_release release;
          heteroagg::cuda::uniform(seed, stream, data, static_cast<std::size_t>(n));
        }
        return out;
      },
      py::arg("seed"), py::arg("stream"), py::arg("n"));
  m.def(
      "load_cufft",
      [](const std::vector<std::string>& paths) {
        heteroagg::cuda::cufft(paths);
        return heteroagg::cuda::cufft_path();
      },
      py::arg("paths"));
  m.def(
      "multislice",
      [](const bindings::f32_array& potentials, std::vector<double> thickness, std::pair<double, double> sampling,
         double energy, double semiangle, const bindings::aberration_tuples& aberrations,
         const bindings::detector_tuples& detectors, std::vector<std::size_t> exit_planes,
         std::pair<std::size_t, std::size_t> window, const bindings::f64_array& positions, unsigned threads,
         py::object progress, std::size_t batch) {
        transmission_stack stack;
        const multislice_request request =
            bindings::make_request(potentials, std::move(thickness), sampling, energy, semiangle, aberrations,
                                   detectors, std::move(exit_planes), window, positions, threads, stack);
        py::array_t<float> out = bindings::result_array(request);
        float* result = out.mutable_data();
        bindings::progress_relay relay{std::move(progress)};
        bindings::run_without_gil([&] {
          heteroagg::cuda::run_multislice(request, potentials.data(), result, batch, &bindings::progress_relay::call,
                                          &relay);
        });
        return out;
      },
      py::arg("potentials"), py::arg("thickness"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"),
      py::arg("aberrations"), py::arg("detectors"), py::arg("exit_planes"), py::arg("window"),
      py::arg("positions"), py::arg("threads") = 0, py::arg("progress") = py::none(), py::arg("batch") = 0);
}
