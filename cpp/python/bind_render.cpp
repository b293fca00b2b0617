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

namespace py = pybind11;
using namespace heteroagg;

namespace {

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using u8_array = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

thickness_table make_table(double step, const f64_array& density, const f64_array& spread) {
  thickness_table t;
  t.step_nm = step;
  t.density.assign(density.data(), density.data() + density.size());
  t.spread.assign(spread.data(), spread.data() + spread.size());
  return t;
}

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

// The arrays of one aggregate, kept alive while the core reads them.
struct aggregate_arrays {
  f64_array centers, radii;
  u8_array materials;
  render_input input() const {
    if (centers.ndim() != 2 || centers.shape(1) != 3)
      throw std::invalid_argument("centers must have shape (n, 3)");
    const auto n = static_cast<std::size_t>(centers.shape(0));
    if (static_cast<std::size_t>(radii.size()) != n || static_cast<std::size_t>(materials.size()) != n)
      throw std::invalid_argument("radii and materials need one entry per centre");
    render_input in;
    in.centers = centers.data();
    in.radii = radii.data();
    in.materials = materials.data();
    in.n = n;
    return in;
  }
};

}  // namespace

void bind_render(py::module_& m) {
  py::class_<render_settings>(m, "RenderSettings")
      .def(py::init([](std::size_t ny, std::size_t nx, double pixel_nm,
                       const std::vector<std::tuple<double, f64_array, f64_array>>& tables,
                       bool extrapolate, bool orientation_spread, double support_nm,
                       std::optional<std::tuple<double, f64_array, f64_array>> support,
                       double support_atoms_per_nm3, std::optional<f32_array> kernel,
                       double scan_jitter_px, double dose, double gain, double black_level,
                       double read_noise) {
             render_settings s;
             s.ny = ny;
             s.nx = nx;
             s.pixel_nm = pixel_nm;
             for (const auto& [step, density, spread] : tables) s.tables.push_back(make_table(step, density, spread));
             s.extrapolate = extrapolate;
             s.orientation_spread = orientation_spread;
             s.support_nm = support_nm;
             if (support) s.support = make_table(std::get<0>(*support), std::get<1>(*support), std::get<2>(*support));
             s.support_atoms_per_nm3 = support_atoms_per_nm3;
             if (kernel) {
               if (kernel->ndim() != 2 || kernel->shape(0) % 2 == 0 || kernel->shape(1) % 2 == 0)
                 throw std::invalid_argument("kernel must be 2D with odd sides");
               s.kernel.assign(kernel->data(), kernel->data() + kernel->size());
               s.kernel_ry = static_cast<std::size_t>(kernel->shape(0) / 2);
               s.kernel_rx = static_cast<std::size_t>(kernel->shape(1) / 2);
             }
             s.scan_jitter_px = scan_jitter_px;
             s.dose = dose;
             s.gain = gain;
             s.black_level = black_level;
             s.read_noise = read_noise;
             return s;
           }),
           py::arg("ny"), py::arg("nx"), py::arg("pixel_nm"), py::arg("tables"), py::arg("extrapolate"),
           py::arg("orientation_spread"), py::arg("support_nm"), py::arg("support"),
           py::arg("support_atoms_per_nm3"), py::arg("kernel"), py::arg("scan_jitter_px"), py::arg("dose"),
           py::arg("gain"), py::arg("black_level"), py::arg("read_noise"));

  m.def(
      "render_haadf",
      [](const f64_array& centers, const f64_array& radii, const u8_array& materials,
         std::optional<f64_array> rotation, std::optional<std::pair<double, double>> center,
         std::uint64_t seed, const render_settings& settings, bool labels) {
        const aggregate_arrays arrays{centers, radii, materials};
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
      [](const std::vector<std::tuple<f64_array, f64_array, u8_array>>& aggregates,
         const std::vector<std::uint64_t>& seeds, const render_settings& settings, unsigned threads) {
        if (seeds.size() != aggregates.size()) throw std::invalid_argument("one seed per aggregate");
        std::vector<aggregate_arrays> arrays;
        std::vector<render_input> inputs;
        arrays.reserve(aggregates.size());
        for (std::size_t i = 0; i < aggregates.size(); ++i) {
          arrays.push_back({std::get<0>(aggregates[i]), std::get<1>(aggregates[i]), std::get<2>(aggregates[i])});
          inputs.push_back(arrays.back().input());
          inputs.back().seed = seeds[i];
        }
        const auto count = static_cast<py::ssize_t>(inputs.size());
        const auto ny = static_cast<py::ssize_t>(settings.ny), nx = static_cast<py::ssize_t>(settings.nx);
        py::array_t<float> images({count, ny, nx});
        py::array_t<double> rotations({count, py::ssize_t{3}, py::ssize_t{3}});
        py::array_t<bool> clipped(count);
        std::vector<render_output> outputs(inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i)
          outputs[i].image = images.mutable_data() + static_cast<py::ssize_t>(i) * ny * nx;
        {
          py::gil_scoped_release release;
          render_haadf_batch(inputs, settings, outputs, threads);
        }
        for (std::size_t i = 0; i < outputs.size(); ++i) {
          std::copy(outputs[i].rotation.m.begin(), outputs[i].rotation.m.end(), rotations.mutable_data() + 9 * i);
          clipped.mutable_data()[i] = outputs[i].clipped;
        }
        return py::make_tuple(images, rotations, clipped);
      },
      py::arg("aggregates"), py::arg("seeds"), py::arg("settings"), py::arg("threads"));
}
