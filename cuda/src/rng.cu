#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "heteroagg/rng.hpp"
#include "heteroagg_cuda/rng.hpp"

namespace heteroagg::cuda {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

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

// Device memory owned for the lifetime of a scope.
class device_buffer {
 public:
  explicit device_buffer(std::size_t bytes) { check(cudaMalloc(&ptr_, bytes), "cudaMalloc"); }
  ~device_buffer() { cudaFree(ptr_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

}  // namespace

int device_count(std::string& message) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    message = cudaGetErrorString(status);
    cudaGetLastError();
    return 0;
  }
  message = count ? "ok" : "no CUDA device";
  return count;
}

void uniform(std::uint64_t seed, std::uint64_t stream, double* out, std::size_t n) {
  if (n == 0) return;
  device_buffer buffer(n * sizeof(double));
  const unsigned threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  uniform_kernel<<<blocks, threads>>>(seed, stream, static_cast<double*>(buffer.get()), n);
  check(cudaGetLastError(), "uniform_kernel launch");
  check(cudaMemcpy(out, buffer.get(), n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
}

}  // namespace heteroagg::cuda
