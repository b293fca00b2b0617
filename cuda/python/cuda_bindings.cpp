// pybind11 bindings of the CUDA kernels: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "heteroagg_cuda/rng.hpp"

namespace py = pybind11;

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
}
