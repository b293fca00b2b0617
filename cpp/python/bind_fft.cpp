// pybind11 bindings of the 2D FFT: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "heteroagg/fft.hpp"

namespace py = pybind11;

void bind_fft(py::module_& m) {
  using heteroagg::complex64;
  m.def(
      "fft2",
      [](const py::array& a, bool inverse) {
        if (!a.dtype().is(py::dtype::of<complex64>()))
          throw std::invalid_argument("fft2 needs a complex64 array, got " + std::string(py::str(a.dtype())));
        if (a.ndim() != 2 && a.ndim() != 3)
          throw std::invalid_argument("fft2 needs a 2D array or a 3D batch of 2D arrays");
        const auto src = py::array_t<complex64, py::array::c_style>::ensure(a);
        if (!src) throw py::error_already_set();
        const auto ny = static_cast<std::size_t>(a.shape(a.ndim() - 2));
        const auto nx = static_cast<std::size_t>(a.shape(a.ndim() - 1));
        const auto count = a.ndim() == 3 ? static_cast<std::size_t>(a.shape(0)) : std::size_t{1};
        const heteroagg::fft2_plan plan(ny, nx);
        py::array_t<complex64> out(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
        {
          py::gil_scoped_release release;
          complex64* data = out.mutable_data();
          std::memcpy(data, src.data(), count * ny * nx * sizeof(complex64));
          if (inverse)
            plan.inverse(data, count);
          else
            plan.forward(data, count);
        }
        return out;
      },
      py::arg("a"), py::arg("inverse") = false,
      "2D FFT over the last two axes of a complex64 array (numpy.fft.fft2 / ifft2 conventions).");
  m.def("next_fft_size", &heteroagg::next_fft_size, py::arg("n"),
        "Smallest size >= n that factors into 2, 3, 5 and 7.");
}
