// pybind11 bindings of the sphere fill (crystal.hpp): conversions only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "heteroagg/crystal.hpp"
#include "exact_integers.hpp"

namespace py = pybind11;
using namespace heteroagg;

namespace {

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using u8_array = bindings::exact_integers<std::uint8_t>;
using u32_array = bindings::exact_integers<std::uint32_t>;

// Move a vector's buffer into a numpy array of the given shape, without copying.
template <class T>
py::array_t<T> take(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<T>(std::move(values));
  py::capsule release(owner, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owner->data(), release);
}

void require_shape(const py::array& a, std::vector<py::ssize_t> shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t k = 0; ok && k < shape.size(); ++k) ok = shape[k] < 0 || a.shape(k) == shape[k];
  if (!ok) throw std::invalid_argument(std::string(name) + " has the wrong shape");
}

vec3 row(const double* p) { return {p[0], p[1], p[2]}; }

// A unit cell from (lattice (3, 3) rows, fractional (m, 3), numbers (m,)).
unit_cell to_cell(const f64_array& lattice, const f64_array& fractional, const u8_array& numbers) {
  require_shape(lattice, {3, 3}, "lattice");
  require_shape(fractional, {-1, 3}, "fractional positions");
  require_shape(numbers, {fractional.shape(0)}, "atomic numbers");
  unit_cell cell;
  for (int k = 0; k < 3; ++k) cell.lattice[k] = row(lattice.data() + 3 * k);
  const auto m = static_cast<std::size_t>(fractional.shape(0));
  for (std::size_t k = 0; k < m; ++k) cell.basis.push_back(row(fractional.data() + 3 * k));
  cell.numbers.assign(numbers.data(), numbers.data() + m);
  return cell;
}

mat3 to_mat3(const f64_array& r) {
  require_shape(r, {3, 3}, "rotation");
  mat3 m;
  std::copy(r.data(), r.data() + 9, m.m.begin());
  return m;
}

py::tuple atoms_tuple(atom_arrays&& a) {
  const auto n = static_cast<py::ssize_t>(a.size());
  return py::make_tuple(take(std::move(a.positions), {n, 3}), take(std::move(a.numbers), {n}),
                        take(std::move(a.particles), {n}));
}

}  // namespace

void bind_crystal(py::module_& m) {
  m.def(
      "fill_sphere",
      [](const f64_array& lattice, const f64_array& fractional, const u8_array& numbers,
         const f64_array& centre, double radius, const f64_array& rotation, const f64_array& offset) {
        const unit_cell cell = to_cell(lattice, fractional, numbers);
        require_shape(centre, {3}, "centre");
        require_shape(offset, {3}, "offset");
        const mat3 r = to_mat3(rotation);
        atom_arrays out;
        {
          py::gil_scoped_release release;
          fill_sphere(cell, row(centre.data()), radius, r, row(offset.data()), out);
        }
        return atoms_tuple(std::move(out));
      },
      py::arg("lattice"), py::arg("fractional"), py::arg("numbers"), py::arg("centre"),
      py::arg("radius"), py::arg("rotation"), py::arg("offset"));

  m.def(
      "fill_aggregate",
      [](const std::vector<py::tuple>& cells, const f64_array& centres, const f64_array& radii,
         const u32_array& structure, std::uint64_t seed, bool rotate, bool random_offset,
         bool drop_overlaps, int threads) {
        std::vector<unit_cell> unit_cells;
        for (const auto& c : cells) {
          if (c.size() != 3) throw std::invalid_argument("a cell is (lattice, fractional, numbers)");
          unit_cells.push_back(to_cell(c[0].cast<f64_array>(), c[1].cast<f64_array>(), c[2].cast<u8_array>()));
        }
        require_shape(centres, {-1, 3}, "centres");
        const auto n = centres.shape(0);
        require_shape(radii, {n}, "radii");
        require_shape(structure, {n}, "structure");
        fill_options options;
        options.rotate = rotate;
        options.random_offset = random_offset;
        options.drop_overlaps = drop_overlaps;
        options.threads = threads;
        atom_arrays out;
        {
          py::gil_scoped_release release;
          out = fill_aggregate(unit_cells, centres.data(), radii.data(), structure.data(),
                               static_cast<std::size_t>(n), seed, options);
        }
        return atoms_tuple(std::move(out));
      },
      py::arg("cells"), py::arg("centres"), py::arg("radii"), py::arg("structure"), py::arg("seed"),
      py::arg("rotate"), py::arg("random_offset"), py::arg("drop_overlaps"), py::arg("threads"));

  m.def(
      "sphere_orientation",
      [](std::uint64_t seed, std::uint64_t index, bool rotate, bool random_offset) {
        fill_options options;
        options.rotate = rotate;
        options.random_offset = random_offset;
        const sphere_frame f = sphere_orientation(seed, index, options);
        std::vector<double> r(f.rotation.m.begin(), f.rotation.m.end());
        std::vector<double> s = {f.offset.x, f.offset.y, f.offset.z};
        return py::make_tuple(take(std::move(r), {3, 3}), take(std::move(s), {3}));
      },
      py::arg("seed"), py::arg("index"), py::arg("rotate"), py::arg("random_offset"));
}
