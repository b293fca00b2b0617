#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "heteroagg/rng.hpp"
#include "heteroagg_cuda/device_memory.hpp"
#include "heteroagg_cuda/rng.hpp"

namespace heteroagg::cuda {

namespace {

// Element k of philox_stream::uniform() uses 32-bit words 2k and 2k + 1 of
// the stream, i.e. words (2k mod 4, 2k mod 4 + 1) of block k / 2.
__global__ void uniform_kernel(std::uint64_t seed, std::uint64_t stream, double* out, std::size_t n) {
  const std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const std::uint64_t block_index = k / 2;
  const philox_block words = philox4x32_10(
      philox_block{{static_cast<std::uint32_t>(block_index), static_cast<std::uint32_t>(block_index >> 32),
                    static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}},
      static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  const int first = static_cast<int>(2 * (k % 2));
  out[k] = bits_to_open_unit(words.v[first], words.v[first + 1]);
}

}  // namespace

int device_count(std::string& message) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    message = cudaGetErrorString(status);
    cudaGetLastError();
    return 0;
  }
  if (count == 0) {
    message = "no CUDA device";
    return 0;
  }
  // A device the module holds no code for (an architecture older than those
  // it was built for) fails every launch: count it as none, so that "auto"
  // falls back to the CPU.
  cudaFuncAttributes attributes{};
  const cudaError_t image = cudaFuncGetAttributes(&attributes, uniform_kernel);
  if (image != cudaSuccess) {
    message = std::string("the CUDA module has no code for this device: ") + cudaGetErrorString(image);
    cudaGetLastError();
    return 0;
  }
  message = "ok";
  return count;
}

void uniform(std::uint64_t seed, std::uint64_t stream, double* out, std::size_t n) {
  if (n == 0) return;
  device_array<double> buffer(n);
  const unsigned threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  uniform_kernel<<<blocks, threads>>>(seed, stream, buffer.get(), n);
  check(cudaGetLastError(), "uniform_kernel launch");
  buffer.download(out, n);
}

}  // namespace heteroagg::cuda
