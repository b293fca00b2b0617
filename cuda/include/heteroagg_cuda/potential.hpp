// Host entry point of the CUDA projected potentials: the twin of
// heteroagg::projected_potentials, writing into device memory.
#pragma once

#include "heteroagg/potential.hpp"

namespace heteroagg::cuda {

// Projected potentials of every slice, (slices, ny, nx) float32 in V·Å,
// written to `out` in device memory (host memory when `out_on_device` is
// false).  Same FFT superposition as the CPU
// path: each element's atoms are deposited as bilinear deltas, transformed
// (one batched cuFFT plan over the slices), weighted by the element's table
// from element_factor_tables and summed; one inverse FFT per slice follows.
// Agrees with the CPU path to single-precision rounding (deposits are
// atomic additions, so their order may vary).  Throws std::invalid_argument
// for bad requests and std::runtime_error for CUDA or cuFFT errors.
void projected_potentials(const potential_request& request, const projected_form_factor& form, float* out,
                          bool out_on_device = true);

}  // namespace heteroagg::cuda
