// Host entry point of the CUDA multislice: the twin of heteroagg::
// make_transmission followed by heteroagg::run_multislice.
#pragma once

#include <cstddef>
#include <optional>

#include "heteroagg/multislice.hpp"
#include "heteroagg/potential.hpp"

namespace heteroagg::cuda {

// Propagates the request's probes through transmission functions built on
// the device from `potentials` (slices x ny x nx, V·Å, the grid of
// request.stack, whose data is not read), in batches of `batch` probes that
// share one batched cuFFT plan (0: as many as about 1 GiB of wave functions
// holds).  Writes `out` in the layout of heteroagg::run_multislice; the
// results agree with it to single-precision rounding.  `progress` is called
// from the calling thread after every batch.  `potentials` is host memory,
// or device memory when `potentials_on_device` (from projected_potentials in
// heteroagg_cuda/potential.hpp, say).  With `fused`, each slice is one
// kernel over rows and one over columns instead of cuFFT's transforms and
// separate multiplies (the twins of fft2_plan::rows_pass and columns_pass);
// it takes windows whose sides are powers of two from 2 to 1024 points.
// Unset, `fused` is fused_steps_fit(window).  Throws std::invalid_argument
// for inconsistent requests and std::runtime_error for CUDA errors.
void run_multislice(const multislice_request& request, const float* potentials, float* out, std::size_t batch = 0,
                    progress_callback progress = nullptr, void* context = nullptr,
                    bool potentials_on_device = false, std::optional<bool> fused = std::nullopt);

// Whether the fused steps take a window of ny x nx points: both sides powers
// of two from 2 to 1024, and their kernels' shared memory within what a block
// of the current device may hold.
bool fused_steps_fit(std::size_t ny, std::size_t nx);

// The same with the potentials built on the device from `atoms` (on the
// request's grid, one slice per thickness), never leaving it.
void run_multislice_from_atoms(const multislice_request& request, const potential_request& atoms,
                               const projected_form_factor& form, float* out, std::size_t batch = 0,
                               progress_callback progress = nullptr, void* context = nullptr,
                               std::optional<bool> fused = std::nullopt);

}  // namespace heteroagg::cuda
