// pybind11 bindings of the atomic potential parametrisations: conversions only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "heteroagg/parametrization.hpp"

namespace py = pybind11;

namespace {

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;

// A radial function of one element applied elementwise; the result has the
// input's shape.
using radial_function = void (heteroagg::atomic_potential::*)(const double*, double*,
                                                              std::size_t) const noexcept;

template <radial_function function>
f64_array apply(const std::string& parametrization, int z, const f64_array& x) {
  const heteroagg::atomic_potential atom(heteroagg::parametrization_from_name(parametrization), z);
  f64_array out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const auto n = static_cast<std::size_t>(x.size());
  {
    py::gil_scoped_release release;
    (atom.*function)(x.data(), out.mutable_data(), n);
  }
  return out;
}

}  // namespace

void bind_parametrization(py::module_& m) {
  using heteroagg::atomic_potential;
  m.attr("POTENTIAL_PREFACTOR") = heteroagg::potential_prefactor;
  m.attr("MAX_ATOMIC_NUMBER") = heteroagg::max_atomic_number;
  m.def("atomic_number", [](const std::string& symbol) { return heteroagg::atomic_number(symbol); },
        py::arg("symbol"));
  m.def("element_symbol", [](int z) { return std::string(heteroagg::element_symbol(z)); }, py::arg("z"));
  m.def("scattering_factor", &apply<&atomic_potential::scattering_factor>, py::arg("parametrization"),
        py::arg("z"), py::arg("k"));
  m.def("potential", &apply<&atomic_potential::potential>, py::arg("parametrization"), py::arg("z"),
        py::arg("r"));
  m.def("projected_potential", &apply<&atomic_potential::projected_potential>,
        py::arg("parametrization"), py::arg("z"), py::arg("r"));
  m.def("projected_potential_fourier", &apply<&atomic_potential::projected_potential_fourier>,
        py::arg("parametrization"), py::arg("z"), py::arg("k"));
  m.def(
      "bessel_k0_k1",
      [](double x) {
        const auto k = heteroagg::bessel_k0_k1(x);
        return py::make_tuple(k.k0, k.k1);
      },
      py::arg("x"));
}
