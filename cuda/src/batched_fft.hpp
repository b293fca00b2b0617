// A batched 2D complex-to-complex cuFFT plan, shared by the CUDA kernels'
// host code (private to the CUDA library).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "heteroagg_cuda/cufft_library.hpp"

namespace heteroagg::cuda {

inline void check_fft(cufft_result status, const char* what) {
  if (status != 0)
    throw std::runtime_error(std::string("cuFFT error ") + std::to_string(status) + " in " + what);
}

// Destroyed with the object; transforms in place.
class batched_fft {
 public:
  batched_fft(const cufft_functions& fft, std::size_t ny, std::size_t nx, std::size_t batch) : fft_(fft) {
    int n[2] = {static_cast<int>(ny), static_cast<int>(nx)};
    check_fft(fft_.plan_many(&plan_, 2, n, nullptr, 1, 0, nullptr, 1, 0, cufft_c2c, static_cast<int>(batch)),
              "cufftPlanMany");
  }
  ~batched_fft() { fft_.destroy(plan_); }
  batched_fft(const batched_fft&) = delete;
  batched_fft& operator=(const batched_fft&) = delete;

  void forward(float2* data) const { check_fft(fft_.exec_c2c(plan_, data, data, cufft_forward), "forward FFT"); }
  // Unnormalised: the caller folds in 1 / (ny nx).
  void inverse(float2* data) const { check_fft(fft_.exec_c2c(plan_, data, data, cufft_inverse), "inverse FFT"); }

 private:
  const cufft_functions& fft_;
  cufft_handle plan_ = 0;
};

}  // namespace heteroagg::cuda
