// Host entry points of the CUDA random-number kernels.  Same contracts as the
// C++ twins in heteroagg/rng.hpp: identical streams for identical seeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace heteroagg::cuda {

// Number of visible CUDA devices; `message` explains a zero.
int device_count(std::string& message);

// Fill host buffer `out` with the first n doubles of philox_stream(seed,
// stream).uniform(), computed on the current device.  Throws
// std::runtime_error on any CUDA error.
void uniform(std::uint64_t seed, std::uint64_t stream, double* out, std::size_t n);

}  // namespace heteroagg::cuda
