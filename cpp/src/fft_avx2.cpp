// The AVX2+FMA build of the FFT kernel; this file alone is compiled with
// -mavx2 -mfma and is only called after a run-time check of the CPU.
#include "fft_kernel.hpp"

#define HETEROAGG_FFT_NAME fft2_avx2_kernels
#include "fft_kernel.inc"
