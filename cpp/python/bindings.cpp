// pybind11 bindings of the heteroagg C++ core: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <iterator>
#include <cstdint>
#include <memory>
#include <vector>

#include "heteroagg/aggregate.hpp"
#include "heteroagg/descriptors.hpp"
#include "heteroagg/rng.hpp"
#include "exact_integers.hpp"
#include "interruptible.hpp"

namespace py = pybind11;
using namespace heteroagg;

void bind_crystal(py::module_& m);  // bind_crystal.cpp
void bind_fft(py::module_& m);
void bind_parametrization(py::module_& m);
void bind_stem(py::module_& m);     // bind_stem.cpp
void bind_render(py::module_& m);   // bind_render.cpp

namespace {

// Hand a vector's buffer to numpy without copying.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<T>(std::move(values));
  py::capsule free_owner(owner, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owner->data(), free_owner);
}

py::tuple aggregate_arrays(aggregate&& agg) {
  const auto n = static_cast<py::ssize_t>(agg.size());
  return py::make_tuple(to_numpy(std::move(agg.centers), {n, 3}), to_numpy(std::move(agg.radii), {n}),
                        to_numpy(std::move(agg.materials), {n}));
}

using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using u8_array = bindings::exact_integers<std::uint8_t>;

// Aggregates of more particles are sampled on a worker thread, where Ctrl-C can
// stop them: with a wide radius law a few thousand particles take a minute to
// fail.  Smaller ones took at most 0.1 s over radius spreads up to 3 and every
// fractal dimension, and skip the thread (30 us a call).
constexpr int interruptible_particles = 256;

// Field names of descriptor_values(), in order.
constexpr const char* descriptor_fields[] = {
    "contacts", "cn", "hcn", "n_particles", "n_ti", "n_w", "n_contacts", "n_hetero_contacts",
    "coordination_number", "hetero_coordination_number", "hetero_coordination_ti",
    "hetero_coordination_w", "hetero_contact_fraction", "n_homo_clusters_ti", "n_homo_clusters_w",
    "n_components", "radius_of_gyration", "gyration_eigenvalues", "asphericity", "acylindricity",
    "relative_shape_anisotropy", "volume_fraction_wo3", "total_volume"};

template <class T>
py::array_t<T> read_only(py::array_t<T> array) {
  py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return array;
}

// The result as a dict keyed by `keys` (descriptor_fields as Python strings,
// then "contact_tol"), arrays read-only: ready to be an instance __dict__.
py::dict descriptor_values(descriptor_result&& d, double contact_tol, const py::tuple& keys) {
  const auto n = static_cast<py::ssize_t>(d.n_particles);
  const auto m = static_cast<py::ssize_t>(d.contacts.size() / 2);
  const auto& ev = d.gyration_eigenvalues;
  const py::object values[] = {
      read_only(to_numpy(std::move(d.contacts), {m, 2})), read_only(to_numpy(std::move(d.cn), {n})),
      read_only(to_numpy(std::move(d.hcn), {n})), py::int_(d.n_particles), py::int_(d.n_ti),
      py::int_(d.n_w), py::int_(d.n_contacts), py::int_(d.n_hetero_contacts),
      py::float_(d.coordination_number), py::float_(d.hetero_coordination_number),
      py::float_(d.hetero_coordination_ti), py::float_(d.hetero_coordination_w),
      py::float_(d.hetero_contact_fraction), py::int_(d.n_homo_clusters_ti), py::int_(d.n_homo_clusters_w),
      py::int_(d.n_components), py::float_(d.radius_of_gyration), py::make_tuple(ev[0], ev[1], ev[2]),
      py::float_(d.asphericity), py::float_(d.acylindricity), py::float_(d.relative_shape_anisotropy),
      py::float_(d.volume_fraction_wo3), py::float_(d.total_volume), py::float_(contact_tol)};
  static_assert(std::size(values) == std::size(descriptor_fields) + 1);
  py::dict out;
  for (std::size_t k = 0; k < std::size(values); ++k)
    if (PyDict_SetItem(out.ptr(), PyTuple_GET_ITEM(keys.ptr(), k), values[k].ptr()) != 0)
      throw py::error_already_set();
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "heteroagg compiled core (C++17)";

  py::register_exception<generation_error>(m, "GenerationError", PyExc_RuntimeError);

  py::class_<model_params>(m, "CoreParams")
      .def(py::init<>())
      .def_readwrite("n_particles", &model_params::n_particles)
      .def_readwrite("frac_w", &model_params::frac_w)
      .def_readwrite("radius_ti", &model_params::radius_ti)
      .def_readwrite("radius_w", &model_params::radius_w)
      .def_readwrite("sigma_g", &model_params::sigma_g)
      .def_readwrite("fractal_dim", &model_params::fractal_dim)
      .def_readwrite("prefactor", &model_params::prefactor)
      .def_readwrite("segregation", &model_params::segregation)
      .def_readwrite("overlap", &model_params::overlap);

  py::class_<sampler_options>(m, "SamplerOptions")
      .def(py::init<>())
      .def_readwrite("pair_tries", &sampler_options::pair_tries)
      .def_readwrite("placement_tries", &sampler_options::placement_tries)
      .def_readwrite("gamma_relaxations", &sampler_options::gamma_relaxations)
      .def_readwrite("max_rg_error", &sampler_options::max_rg_error)
      .def_readwrite("aggregate_tries", &sampler_options::aggregate_tries);

  m.attr("MAX_PARTICLES") = max_particles;
  m.def("validate", static_cast<void (*)(const model_params&)>(&validate), py::arg("params"));
  m.def("n_wo3", &n_wo3, py::arg("params"));
  m.def("fractal_law_rg", &fractal_law_rg, py::arg("n"), py::arg("r_geo"), py::arg("fractal_dim"),
        py::arg("prefactor"));

  m.def(
      "sample_aggregate",
      [](const model_params& params, std::uint64_t seed, const sampler_options& options) {
        aggregate agg;
        if (params.n_particles <= interruptible_particles) {  // a tenth of a second at most
          py::gil_scoped_release release;
          agg = sample_aggregate(params, seed, options);
        } else {
          agg = bindings::call_interruptibly(
              [&](const std::atomic<bool>& cancel) { return sample_aggregate(params, seed, options, &cancel); });
        }
        return aggregate_arrays(std::move(agg));
      },
      py::arg("params"), py::arg("seed"), py::arg("options"));

  m.def(
      "sample_aggregates",
      [](const std::vector<model_params>& params, const std::vector<std::uint64_t>& seeds,
         int threads, const sampler_options& options) {
        std::vector<batch_item> items = bindings::call_interruptibly([&](const std::atomic<bool>& cancel) {
          return sample_aggregates(params, seeds, threads, options, &cancel);
        });
        py::list out;
        for (auto& item : items) {
          if (item.error.empty())
            out.append(aggregate_arrays(std::move(item.value)));
          else
            out.append(py::make_tuple(item.error, item.invalid_input));
        }
        return out;
      },
      py::arg("params"), py::arg("seeds"), py::arg("threads"), py::arg("options"));

  py::tuple field_names(std::size(descriptor_fields));
  py::tuple result_keys(std::size(descriptor_fields) + 1);
  for (std::size_t k = 0; k < std::size(descriptor_fields); ++k) {
    const py::str key(descriptor_fields[k]);
    field_names[k] = key;
    result_keys[k] = key;
  }
  result_keys[std::size(descriptor_fields)] = py::str("contact_tol");

  m.def(
      "descriptors",
      [result_keys](const f64_array& centers, const f64_array& radii, const u8_array& materials, double tol) {
        if (centers.ndim() != 2 || centers.shape(1) != 3)
          throw std::invalid_argument("centers must have shape (n, 3)");
        const auto n = static_cast<std::size_t>(centers.shape(0));
        if (radii.ndim() != 1 || static_cast<std::size_t>(radii.shape(0)) != n ||
            materials.ndim() != 1 || static_cast<std::size_t>(materials.shape(0)) != n)
          throw std::invalid_argument("radii and materials must have shape (n,)");
        descriptor_result result;
        {
          py::gil_scoped_release release;
          result = compute_descriptors(centers.data(), radii.data(), materials.data(), n, tol);
        }
        return descriptor_values(std::move(result), tol, result_keys);
      },
      py::arg("centers"), py::arg("radii"), py::arg("materials"), py::arg("contact_tol"));

  m.attr("DESCRIPTOR_FIELDS") = field_names;

  m.def("derive_seed", &derive_seed, py::arg("root_seed"), py::arg("index"));
  m.def(
      "philox4x32_10",
      [](std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
        const philox_block out =
            philox4x32_10(philox_block{{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
        return std::array<std::uint32_t, 4>{out.v[0], out.v[1], out.v[2], out.v[3]};
      },
      py::arg("counter"), py::arg("key"));
  m.def(
      "uniform",
      [](std::uint64_t seed, std::uint64_t stream, py::ssize_t n) {
        if (n < 0) throw std::invalid_argument("n must be >= 0");
        std::vector<double> values(static_cast<std::size_t>(n));
        {
          py::gil_scoped_release release;
          philox_stream rng(seed, stream);
          for (auto& v : values) v = rng.uniform();
        }
        return to_numpy(std::move(values), {n});
      },
      py::arg("seed"), py::arg("stream"), py::arg("n"));

  py::dict info;
  info["version"] = HETEROAGG_VERSION;
  info["compiler"] = HETEROAGG_COMPILER;
  info["build_type"] = HETEROAGG_BUILD_TYPE;
  info["cxx_flags"] = HETEROAGG_CXX_FLAGS;
  info["cuda_compiler"] = HETEROAGG_CUDA_COMPILER;
  m.attr("build_info") = info;

  bind_crystal(m);
  bind_fft(m);
  bind_parametrization(m);
  bind_stem(m);
  bind_render(m);
}
