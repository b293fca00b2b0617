// cuFFT, loaded at run time.
//
// The CUDA module links no FFT library, so it builds wherever nvcc does (the
// toolkit's libraries are not needed) and finds cuFFT where it is installed:
// the CUDA toolkit, or the nvidia-cufft wheel that PyTorch and CuPy bring.
// The declarations below are the parts of cuFFT's stable C interface that
// the multislice uses.
#pragma once

#include <string>
#include <vector>

namespace heteroagg::cuda {

using cufft_handle = int;
using cufft_result = int;  // 0: success

constexpr int cufft_c2c = 0x29;
constexpr int cufft_forward = -1;
constexpr int cufft_inverse = 1;

struct cufft_functions {
  cufft_result (*plan_many)(cufft_handle*, int, int*, int*, int, int, int*, int, int, int, int) = nullptr;
  cufft_result (*exec_c2c)(cufft_handle, void*, void*, int) = nullptr;
  cufft_result (*destroy)(cufft_handle) = nullptr;
};

// Loads cuFFT on first use, trying `extra_paths` first and then the usual
// library names on the loader's search path; later calls return the library
// already loaded.  Throws std::runtime_error naming every place tried.
const cufft_functions& cufft(const std::vector<std::string>& extra_paths = {});

// The file cuFFT was loaded from, or "" before it is loaded.
std::string cufft_path();

}  // namespace heteroagg::cuda
