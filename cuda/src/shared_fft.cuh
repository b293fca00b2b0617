// Forward FFTs of power-of-two lines, shared by the threads of one block:
// Stockham autosort passes, so input and output are both in natural order.
// Each thread holds R points of its line in registers, j + r n / R for
// r < R; the first pass (radix R) starts from them and the last (radix R
// again) ends in them, so a caller loads, multiplies and stores in registers
// and only the passes between touch shared memory.  Those read every point
// once and write it once, radix 8 where they can.  Lines in shared memory
// are stored with one spare point after every 16 (`padded`), and each pass
// has its own contiguous twiddles, so that neighbouring threads meet few bank
// conflicts.  Inverse transforms are conj(FFT(conj(x))), which the callers
// fold into the loads and multiplies around the forward transform.
#pragma once

#include <cuda_runtime.h>

namespace heteroagg::cuda::shared_fft {

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
__device__ __forceinline__ float2 times_minus_i(float2 a) { return make_float2(a.y, -a.x); }

// Points of one line in shared memory once padded: one spare point after every
// 16, so that strided passes spread over the banks.
__host__ __device__ constexpr unsigned padded(unsigned i) { return i + (i >> 4); }

// log2 of the radix R of the first and last passes, whose points sit in
// registers: 8 from 64 points up, 4 for 16 and 32 points, and the whole line
// (one pass) below.
__host__ __device__ constexpr unsigned outer_bits(unsigned log2n) {
  return log2n >= 6 ? 3 : log2n >= 4 ? 2 : log2n;
}

// log2 of the radix of the pass that follows passes over `done` of the line's
// log2n bits: the outer radix first and last, radix 8 between where at least
// three bits are left for the passes between, then 4 or 2.
__host__ __device__ constexpr unsigned pass_bits(unsigned log2n, unsigned done) {
  const unsigned outer = outer_bits(log2n), left = log2n - done;
  if (done == 0 || left == outer) return outer;
  return left - outer >= 3 ? 3 : left - outer;
}

// In-register DFTs of 2, 4 and 8 points (forward, unnormalised).
__device__ __forceinline__ void dft2(float2& a, float2& b) {
  const float2 s = cadd(a, b);
  b = csub(a, b);
  a = s;
}

__device__ __forceinline__ void dft4(float2& v0, float2& v1, float2& v2, float2& v3) {
  const float2 a = cadd(v0, v2), b = csub(v0, v2), c = cadd(v1, v3), d = times_minus_i(csub(v1, v3));
  v0 = cadd(a, c);
  v1 = cadd(b, d);
  v2 = csub(a, c);
  v3 = csub(b, d);
}

template <unsigned R>
__device__ __forceinline__ void dft(float2* v);

template <>
__device__ __forceinline__ void dft<2>(float2* v) {
  dft2(v[0], v[1]);
}

template <>
__device__ __forceinline__ void dft<4>(float2* v) {
  dft4(v[0], v[1], v[2], v[3]);
}

template <>
__device__ __forceinline__ void dft<8>(float2* v) {
  // Two DFTs of 4 over the even and the odd points, joined with exp(-2 pi i k / 8).
  float2 e0 = v[0], e1 = v[2], e2 = v[4], e3 = v[6], o0 = v[1], o1 = v[3], o2 = v[5], o3 = v[7];
  dft4(e0, e1, e2, e3);
  dft4(o0, o1, o2, o3);
  constexpr float h = 0.70710678118654752f;
  o1 = make_float2(h * (o1.x + o1.y), h * (o1.y - o1.x));
  o2 = times_minus_i(o2);
  o3 = make_float2(h * (o3.y - o3.x), -h * (o3.x + o3.y));
  v[0] = cadd(e0, o0);
  v[4] = csub(e0, o0);
  v[1] = cadd(e1, o1);
  v[5] = csub(e1, o1);
  v[2] = cadd(e2, o2);
  v[6] = csub(e2, o2);
  v[3] = cadd(e3, o3);
  v[7] = csub(e3, o3);
}

// One Stockham pass of radix R over `lines` lines of n = 2^log2n points,
// line l at src + l * stride (points padded), after passes whose radices
// multiply to ns.  tw holds exp(-2 pi i r k / (ns R)) at (r - 1) ns + k for
// 0 < r < R, k < ns.
template <unsigned R>
__device__ void stockham_pass(const float2* src, float2* dst, unsigned log2n, unsigned log2ns, unsigned lines,
                              unsigned stride, const float2* tw) {
  constexpr unsigned log2r = R == 8 ? 3 : R == 4 ? 2 : 1;
  const unsigned log2per_line = log2n - log2r, per_line = 1u << log2per_line, ns = 1u << log2ns;
  const unsigned items = lines << log2per_line;
  for (unsigned i = threadIdx.x; i < items; i += blockDim.x) {
    const unsigned line = i >> log2per_line, j = i & (per_line - 1), k = j & (ns - 1);
    const float2* s = src + line * stride;
    float2 v[R];
    v[0] = s[padded(j)];
#pragma unroll
    for (unsigned r = 1; r < R; ++r) v[r] = cmul(s[padded(j + r * per_line)], tw[(r - 1) * ns + k]);
    dft<R>(v);
    float2* d = dst + line * stride;
    const unsigned first = ((j - k) << log2r) + k;
#pragma unroll
    for (unsigned r = 0; r < R; ++r) d[padded(first + r * ns)] = v[r];
  }
}

// Forward FFT of `lines` lines of n = 2^log2n points, R = 2^outer_bits(log2n)
// points per thread: on entry v[r] is point j + r n / R of line `line`, on
// return it is that point of the transform.  The lines pass through the
// shared buffers a and b (line l at l * stride, points padded) in between; tw
// is the table of stockham_twiddles (n - 1 points) in the same block.  Every
// thread of the block takes part, each holding a distinct (line, j); the
// caller synchronises the block once tw is filled, and may reuse a and b when
// this returns.
template <unsigned R>
__device__ void forward(float2 (&v)[R], unsigned line, unsigned j, float2* a, float2* b, unsigned log2n,
                        unsigned lines, unsigned stride, const float2* tw) {
  constexpr unsigned log2r = R == 8 ? 3 : R == 4 ? 2 : 1;
  dft<R>(v);
  if (log2n == log2r) return;
  // The first pass (its twiddles are all 1) writes point j R + r.
#pragma unroll
  for (unsigned r = 0; r < R; ++r) a[line * stride + padded((j << log2r) + r)] = v[r];
  tw += R - 1;
  unsigned done = log2r;
  __syncthreads();
  while (log2n - done > log2r) {
    const unsigned bits = pass_bits(log2n, done);
    if (bits == 3)
      stockham_pass<8>(a, b, log2n, done, lines, stride, tw);
    else if (bits == 2)
      stockham_pass<4>(a, b, log2n, done, lines, stride, tw);
    else
      stockham_pass<2>(a, b, log2n, done, lines, stride, tw);
    tw += ((1u << bits) - 1) << done;
    done += bits;
    __syncthreads();
    float2* t = a;
    a = b;
    b = t;
  }
  // The last pass, after passes whose radices multiply to n / R, ends at point j + r n / R.
  const unsigned ns = 1u << done;
  const float2* s = a + line * stride;
  v[0] = s[padded(j)];
#pragma unroll
  for (unsigned r = 1; r < R; ++r) v[r] = cmul(s[padded(j + r * ns)], tw[(r - 1) * ns + j]);
  dft<R>(v);
  __syncthreads();
}

}  // namespace heteroagg::cuda::shared_fft
