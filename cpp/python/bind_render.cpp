// pybind11 bindings of the LUT renderer: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

#include "heteroagg/render.hpp"
#include "render_arguments.hpp"

namespace py = pybind11;
using namespace heteroagg;

namespace {

using f64_array = bindings::render_f64;
using u8_array = bindings::render_u8;

mat3 to_mat3(const f64_array& r) {
  if (r.ndim() != 2 || r.shape(0) != 3 || r.shape(1) != 3)
    throw std::invalid_argument("rotation must be a 3x3 matrix");
  mat3 m;
  for (int k = 0; k < 9; ++k) m.m[static_cast<std::size_t>(k)] = r.data()[k];
  return m;
}

py::array_t<double> from_mat3(const mat3& m) {
  py::array_t<double> out({3, 3});
  std::copy(m.m.begin(), m.m.end(), out.mutable_data());
  return out;
}

}  // namespace

void bind_render(py::module_& m) {
  bindings::bind_render_settings(m);

  m.def(
      "render_haadf",
      [](const f64_array& centers, const f64_array& radii, const u8_array& materials,
         std::optional<f64_array> rotation, std::optional<std::pair<double, double>> center,
         std::uint64_t seed, const render_settings& settings, bool labels) {
        const bindings::aggregate_arrays arrays{centers, radii, materials};
        render_input in = arrays.input();
        if (rotation) {
          in.has_rotation = true;
          in.rotation = to_mat3(*rotation);
        }
        if (center) {
          in.has_center = true;
          in.cx = center->first;
          in.cy = center->second;
        }
        in.seed = seed;
        const auto ny = static_cast<py::ssize_t>(settings.ny), nx = static_cast<py::ssize_t>(settings.nx);
        py::array_t<float> image({ny, nx});
        render_output out;
        out.image = image.mutable_data();
        py::dict result;
        if (labels) {
          py::array_t<float> clean({ny, nx});
          py::array_t<float> thickness({static_cast<py::ssize_t>(settings.tables.size()), ny, nx});
          py::array_t<std::int8_t> material({ny, nx});
          py::array_t<std::int32_t> particle({ny, nx});
          out.clean = clean.mutable_data();
          out.thickness = thickness.mutable_data();
          out.material = material.mutable_data();
          out.particle = particle.mutable_data();
          result["clean"] = clean;
          result["thickness"] = thickness;
          result["material"] = material;
          result["particle"] = particle;
        }
        {
          py::gil_scoped_release release;
          render_haadf(in, settings, out);
        }
        result["image"] = image;
        result["rotation"] = from_mat3(out.rotation);
        result["center"] = py::make_tuple(out.cx, out.cy);
        result["clipped"] = out.clipped;
        return result;
      },
      py::arg("centers"), py::arg("radii"), py::arg("materials"), py::arg("rotation"), py::arg("center"),
      py::arg("seed"), py::arg("settings"), py::arg("labels"));

  m.def(
      "render_haadf_batch",
      [](const std::vector<bindings::aggregate_tuple>& aggregates, const std::vector<std::uint64_t>& seeds,
         const render_settings& settings, unsigned threads,
         std::optional<py::array_t<float, py::array::c_style>> out) {
        std::vector<bindings::aggregate_arrays> arrays;
        const std::vector<render_input> inputs = bindings::batch_inputs(aggregates, seeds, arrays);
        const auto count = static_cast<py::ssize_t>(inputs.size());
        const auto ny = static_cast<py::ssize_t>(settings.ny), nx = static_cast<py::ssize_t>(settings.nx);
        using c_array = py::array_t<float, py::array::c_style>;
        c_array images = out ? *out : c_array({count, ny, nx});
        if (images.ndim() != 3 || images.shape(0) != count || images.shape(1) != ny || images.shape(2) != nx)
          throw std::invalid_argument("out must have shape (batch, ny, nx)");
        if (!images.writeable()) throw std::invalid_argument("out is read-only");
        float* data = images.mutable_data();
        std::vector<render_output> outputs(inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i)
          outputs[i].image = data + static_cast<py::ssize_t>(i) * ny * nx;
        {
          py::gil_scoped_release release;
          render_haadf_batch(inputs, settings, outputs, threads);
        }
        const py::tuple geometry = bindings::batch_geometry(outputs);
        return py::make_tuple(images, geometry[0], geometry[1]);
      },
      py::arg("aggregates"), py::arg("seeds"), py::arg("settings"), py::arg("threads"),
      py::arg("out").noconvert() = py::none(),
      "Render a batch into `out` ((batch, ny, nx) float32, C-contiguous and written in place) or a new array.");
}
