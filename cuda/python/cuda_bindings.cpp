// pybind11 bindings of the CUDA kernels: conversions only, no logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "heteroagg_cuda/cufft_library.hpp"
#include "heteroagg_cuda/multislice.hpp"
#include "heteroagg_cuda/potential.hpp"
#include "heteroagg_cuda/render.hpp"
#include "heteroagg_cuda/rng.hpp"
#include "multislice_arguments.hpp"
#include "potential_arguments.hpp"
#include "render_arguments.hpp"

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
         py::object progress, std::size_t batch, std::optional<bool> fused) {
        transmission_stack stack;
        const multislice_request request =
            bindings::make_request(potentials, std::move(thickness), sampling, energy, semiangle, aberrations,
                                   detectors, std::move(exit_planes), window, positions, threads, stack);
        py::array_t<float> out = bindings::result_array(request);
        float* result = out.mutable_data();
        bindings::progress_relay relay{std::move(progress)};
        bindings::run_without_gil([&] {
          heteroagg::cuda::run_multislice(request, potentials.data(), result, batch, &bindings::progress_relay::call,
                                          &relay, false, fused);
        });
        return out;
      },
      py::arg("potentials"), py::arg("thickness"), py::arg("sampling"), py::arg("energy"), py::arg("semiangle"),
      py::arg("aberrations"), py::arg("detectors"), py::arg("exit_planes"), py::arg("window"),
      py::arg("positions"), py::arg("threads") = 0, py::arg("progress") = py::none(), py::arg("batch") = 0,
      py::arg("fused") = py::none(),
      "Multislice on the device; `fused` runs each slice as one row and one column kernel (power-of-two windows; "
      "None: where the window allows, see fused_steps_fit).");
  m.def("fused_steps_fit", &heteroagg::cuda::fused_steps_fit, py::arg("ny"), py::arg("nx"),
        "Whether the fused steps take a window of ny x nx points (both sides powers of two from 2 to 1024, "
        "their shared memory within the current device's limit per block).");

  bindings::bind_render_settings(m, py::module_local());
  m.def(
      "render_haadf_batch",
      [](const std::vector<bindings::aggregate_tuple>& aggregates, const std::vector<std::uint64_t>& seeds,
         const render_settings& settings, unsigned threads, std::uintptr_t out,
         const std::optional<bindings::render_f64>& rotations, const std::optional<bindings::render_f64>& centers,
         std::optional<py::array_t<float, py::array::c_style>> host_out) {
        std::vector<bindings::aggregate_arrays> arrays;
        std::vector<render_input> inputs = bindings::batch_inputs(aggregates, seeds, arrays);
        bindings::set_views(inputs, rotations, centers);
        const auto count = static_cast<py::ssize_t>(inputs.size());
        const auto ny = static_cast<py::ssize_t>(settings.ny), nx = static_cast<py::ssize_t>(settings.nx);
        if (out != 0 && host_out) throw std::invalid_argument("give either a device address or host_out, not both");
        py::object images = py::none();
        float* target = reinterpret_cast<float*>(out);
        if (out == 0) {
          using c_array = py::array_t<float, py::array::c_style>;
          c_array host = host_out ? *host_out : c_array({count, ny, nx});
          if (host.ndim() != 3 || host.shape(0) != count || host.shape(1) != ny || host.shape(2) != nx)
            throw std::invalid_argument("host_out must have shape (batch, ny, nx)");
          if (!host.writeable()) throw std::invalid_argument("host_out is read-only");
          target = host.mutable_data();
          images = host;
        }
        std::vector<render_output> outputs(inputs.size());
        {
          py::gil_scoped_release release;
          heteroagg::cuda::render_haadf_batch(inputs, settings, outputs, target, out != 0, threads);
        }
        const py::tuple geometry = bindings::batch_geometry(outputs);
        return py::make_tuple(images, geometry[0], geometry[1]);
      },
      py::arg("aggregates"), py::arg("seeds"), py::arg("settings"), py::arg("threads") = 0, py::arg("out") = 0,
      py::arg("rotations") = py::none(), py::arg("centers") = py::none(), py::arg("host_out").noconvert() = py::none(),
      "Render a batch into `out`, the address of a (B, ny, nx) float32 device buffer, or with `out` = 0 into "
      "`host_out` ((B, ny, nx) float32, C-contiguous, written in place) or a new numpy array.");

  m.def(
      "projected_potentials",
      [](const bindings::f64_array& positions, const bindings::i32_array& numbers,
         std::pair<std::size_t, std::size_t> gpts, std::pair<double, double> sampling,
         std::pair<double, double> origin, std::vector<double> slice_edges, const std::string& parametrization,
         bool pixel_correction, unsigned threads, std::uintptr_t out) {
        const bindings::potential_arguments args(positions, numbers, gpts, sampling, origin, std::move(slice_edges),
                                                 parametrization, pixel_correction, threads);
        heteroagg::atoms_by_slice(args.request);  // the CPU's checks, before anything is allocated
        const auto shape = std::vector<py::ssize_t>{static_cast<py::ssize_t>(args.slices()),
                                                    static_cast<py::ssize_t>(gpts.first),
                                                    static_cast<py::ssize_t>(gpts.second)};
        if (out != 0) {
          py::gil_scoped_release release;
          heteroagg::cuda::projected_potentials(args.request, args.form(), reinterpret_cast<float*>(out));
          return py::object(py::none());
        }
        py::array_t<float> host(shape);
        float* data = host.mutable_data();
        {
          py::gil_scoped_release release;
          heteroagg::cuda::projected_potentials(args.request, args.form(), data, false);
        }
        return py::object(host);
      },
      py::arg("positions"), py::arg("numbers"), py::arg("gpts"), py::arg("sampling"), py::arg("origin"),
      py::arg("slice_edges"), py::arg("parametrization"), py::arg("pixel_correction") = true,
      py::arg("threads") = 0, py::arg("out") = 0,
      "Projected potentials (slices, ny, nx) V·Å; `out` is the address of a device buffer, or 0 to return numpy.");
  m.def(
      "multislice_atoms",
      [](const bindings::f64_array& atom_positions, const bindings::i32_array& numbers,
         std::pair<std::size_t, std::size_t> gpts, std::pair<double, double> origin,
         std::vector<double> slice_edges, const std::string& parametrization, std::vector<double> thickness,
         std::pair<double, double> sampling, double energy, double semiangle,
         const bindings::aberration_tuples& aberrations, const bindings::detector_tuples& detectors,
         std::vector<std::size_t> exit_planes, std::pair<std::size_t, std::size_t> window,
         const bindings::f64_array& positions, unsigned threads, py::object progress, std::size_t batch,
         std::optional<bool> fused) {
        const bindings::potential_arguments atoms(atom_positions, numbers, gpts, sampling, origin,
                                                  std::move(slice_edges), parametrization, true, threads);
        if (thickness.size() != atoms.slices())
          throw std::invalid_argument("one thickness per slice between the edges is needed");
        transmission_stack stack;
        const multislice_request request =
            bindings::make_request(gpts, std::move(thickness), sampling, energy, semiangle, aberrations, detectors,
                                   std::move(exit_planes), window, positions, threads, stack);
        py::array_t<float> out = bindings::result_array(request);
        float* result = out.mutable_data();
        bindings::progress_relay relay{std::move(progress)};
        bindings::run_without_gil([&] {
          heteroagg::cuda::run_multislice_from_atoms(request, atoms.request, atoms.form(), result, batch,
                                                     &bindings::progress_relay::call, &relay, fused);
        });
        return out;
      },
      py::arg("atom_positions"), py::arg("numbers"), py::arg("gpts"), py::arg("origin"), py::arg("slice_edges"),
      py::arg("parametrization"), py::arg("thickness"), py::arg("sampling"), py::arg("energy"),
      py::arg("semiangle"), py::arg("aberrations"), py::arg("detectors"), py::arg("exit_planes"), py::arg("window"),
      py::arg("positions"), py::arg("threads") = 0, py::arg("progress") = py::none(), py::arg("batch") = 0,
      py::arg("fused") = py::none(),
      "Multislice with the potentials built on the device from the atoms (pixel correction on).");
}
