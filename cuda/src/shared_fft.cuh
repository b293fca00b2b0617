// Forward FFTs of power-of-two lines held in shared memory, shared by the
// threads of one block: Stockham autosort passes of radix 8 (then one of
// radix 4 or 2 for what is left), so input and output are both in natural
// order.  Each pass reads every point once and writes it once; the butterflies
// run in registers.  Lines are stored with one spare point after every 16
// (`padded`), and each pass has its own contiguous twiddles, so that
// neighbouring threads meet few shared-memory bank conflicts.  Inverse
// transforms are conj(FFT(conj(x))), which the callers fold into the loads
// and multiplies around the forward transform.
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

// log2 of the radix of the next pass when `left` of the line's log2n bits are
// still to be transformed: 8 while at least three are, then 4 or 2.
__host__ __device__ constexpr unsigned pass_bits(unsigned left) { return left >= 3 ? 3 : left; }

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

// Forward FFT of `lines` lines of 2^log2n points (line l at a + l * stride,
// points padded), ping-ponging between a and b; returns the one that holds the
// result.  tw is the table of stockham_twiddles (n - 1 points).  The caller
// synchronises the block before (a is filled); every pass ends with a barrier.
__device__ float2* forward(float2* a, float2* b, unsigned log2n, unsigned lines, unsigned stride, const float2* tw) {
  unsigned done = 0;
  while (done < log2n) {
    const unsigned bits = pass_bits(log2n - done);
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
  return a;
}

}  // namespace heteroagg::cuda::shared_fft
