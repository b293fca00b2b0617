// Conversions shared by the CPU and CUDA bindings of the LUT renderer, so
// that heteroagg._core and heteroagg._cuda take the same arguments.
// Conversions only, no logic.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "heteroagg/render.hpp"
#include "exact_integers.hpp"

namespace heteroagg::bindings {

namespace py = pybind11;

using render_f64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using render_f32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using render_u8 = exact_integers<std::uint8_t>;
using table_tuple = std::tuple<double, render_f64, render_f64>;
using aggregate_tuple = std::tuple<render_f64, render_f64, render_u8>;

inline thickness_table make_table(const table_tuple& table) {
  const auto& [step, density, spread] = table;
  thickness_table t;
  t.step_nm = step;
  t.density.assign(density.data(), density.data() + density.size());
  t.spread.assign(spread.data(), spread.data() + spread.size());
  return t;
}

// Registers RenderSettings on `m`; `extra` is e.g. py::module_local().
template <class... Extra>
void bind_render_settings(py::module_& m, const Extra&... extra) {
  py::class_<render_settings>(m, "RenderSettings", extra...)
      .def(py::init([](std::size_t ny, std::size_t nx, double pixel_nm, const std::vector<table_tuple>& tables,
                       bool extrapolate, bool orientation_spread, double support_nm,
                       const std::optional<table_tuple>& support, double support_atoms_per_nm3,
                       const std::optional<render_f32>& kernel, double scan_jitter_px, double dose, double gain,
                       double black_level, double read_noise) {
             render_settings s;
             s.ny = ny;
             s.nx = nx;
             s.pixel_nm = pixel_nm;
             for (const auto& table : tables) s.tables.push_back(make_table(table));
             s.extrapolate = extrapolate;
             s.orientation_spread = orientation_spread;
             s.support_nm = support_nm;
             if (support) s.support = make_table(*support);
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
}

// The arrays of one aggregate, kept alive while the core reads them.
struct aggregate_arrays {
  render_f64 centers, radii;
  render_u8 materials;
  render_input input() const {
    if (centers.ndim() != 2 || centers.shape(1) != 3) throw std::invalid_argument("centers must have shape (n, 3)");
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

// The render inputs of a batch; `arrays` keeps their data alive.
inline std::vector<render_input> batch_inputs(const std::vector<aggregate_tuple>& aggregates,
                                              const std::vector<std::uint64_t>& seeds,
                                              std::vector<aggregate_arrays>& arrays) {
  if (seeds.size() != aggregates.size()) throw std::invalid_argument("one seed per aggregate");
  std::vector<render_input> inputs;
  arrays.reserve(aggregates.size());
  for (std::size_t i = 0; i < aggregates.size(); ++i) {
    arrays.push_back({std::get<0>(aggregates[i]), std::get<1>(aggregates[i]), std::get<2>(aggregates[i])});
    inputs.push_back(arrays.back().input());
    inputs.back().seed = seeds[i];
  }
  return inputs;
}

// Given rotations (B, 3, 3) and field centres (B, 2) nm, where not None;
// else each input draws its rotation from its seed and centres its bounding box.
inline void set_views(std::vector<render_input>& inputs, const std::optional<render_f64>& rotations,
                      const std::optional<render_f64>& centers) {
  const auto count = static_cast<py::ssize_t>(inputs.size());
  if (rotations) {
    if (rotations->ndim() != 3 || rotations->shape(0) != count || rotations->shape(1) != 3 || rotations->shape(2) != 3)
      throw std::invalid_argument("rotations must have shape (B, 3, 3)");
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      inputs[i].has_rotation = true;
      std::copy(rotations->data() + 9 * i, rotations->data() + 9 * (i + 1), inputs[i].rotation.m.begin());
    }
  }
  if (centers) {
    if (centers->ndim() != 2 || centers->shape(0) != count || centers->shape(1) != 2)
      throw std::invalid_argument("centers must have shape (B, 2)");
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      inputs[i].has_center = true;
      inputs[i].cx = centers->data()[2 * i];
      inputs[i].cy = centers->data()[2 * i + 1];
    }
  }
}

// Rotations (B, 3, 3) and clipped flags (B,) of a rendered batch.
inline py::tuple batch_geometry(const std::vector<render_output>& outputs) {
  const auto count = static_cast<py::ssize_t>(outputs.size());
  py::array_t<double> rotations({count, py::ssize_t{3}, py::ssize_t{3}});
  py::array_t<bool> clipped(count);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    std::copy(outputs[i].rotation.m.begin(), outputs[i].rotation.m.end(), rotations.mutable_data() + 9 * i);
    clipped.mutable_data()[i] = outputs[i].clipped;
  }
  return py::make_tuple(rotations, clipped);
}

}  // namespace heteroagg::bindings
