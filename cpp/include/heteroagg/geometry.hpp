// Small 3-vector and rotation helpers shared by the sampler and descriptors.
#pragma once

#include <array>
#include <cmath>

#include "heteroagg/rng.hpp"

namespace heteroagg {

struct vec3 {
  double x = 0.0, y = 0.0, z = 0.0;
};

inline vec3 operator+(vec3 a, vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline vec3 operator-(vec3 a, vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline vec3 operator*(double s, vec3 a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(vec3 a, vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline vec3 cross(vec3 a, vec3 b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
inline double norm2(vec3 a) { return dot(a, a); }
inline double norm(vec3 a) { return std::sqrt(dot(a, a)); }
inline vec3 normalized(vec3 a) { return (1.0 / norm(a)) * a; }

// Row-major 3x3 rotation matrix.
struct mat3 {
  std::array<double, 9> m{1, 0, 0, 0, 1, 0, 0, 0, 1};
};

inline vec3 operator*(const mat3& r, vec3 v) {
  const auto& m = r.m;
  return {m[0] * v.x + m[1] * v.y + m[2] * v.z, m[3] * v.x + m[4] * v.y + m[5] * v.z,
          m[6] * v.x + m[7] * v.y + m[8] * v.z};
}

inline mat3 operator*(const mat3& a, const mat3& b) {
  mat3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      c.m[3 * i + j] = a.m[3 * i] * b.m[j] + a.m[3 * i + 1] * b.m[3 + j] + a.m[3 * i + 2] * b.m[6 + j];
  return c;
}

// Rotation by `angle` about the unit vector `axis` (Rodrigues' formula).
inline mat3 axis_angle_rotation(vec3 axis, double angle) {
  const double c = std::cos(angle), s = std::sin(angle), t = 1.0 - c;
  const double x = axis.x, y = axis.y, z = axis.z;
  mat3 r;
  r.m = {t * x * x + c,     t * x * y - s * z, t * x * z + s * y,
         t * x * y + s * z, t * y * y + c,     t * y * z - s * x,
         t * x * z - s * y, t * y * z + s * x, t * z * z + c};
  return r;
}

// Any unit vector orthogonal to the unit vector `a`.
inline vec3 any_orthogonal(vec3 a) {
  const vec3 helper = std::fabs(a.x) < 0.9 ? vec3{1, 0, 0} : vec3{0, 1, 0};
  return normalized(cross(a, helper));
}

// The smallest rotation that maps unit vector `from` onto unit vector `to`.
inline mat3 align_rotation(vec3 from, vec3 to) {
  const vec3 axis = cross(from, to);
  const double s = norm(axis);
  const double c = dot(from, to);
  if (s < 1e-12) {
    if (c > 0.0) return mat3{};
    return axis_angle_rotation(any_orthogonal(from), 3.141592653589793);
  }
  return axis_angle_rotation((1.0 / s) * axis, std::atan2(s, c));
}

// Uniform direction on the unit sphere.
inline vec3 random_unit_vector(philox_stream& rng) {
  const double z = rng.uniform(-1.0, 1.0);
  const double phi = 6.283185307179586 * rng.uniform();
  const double rho = std::sqrt(std::fmax(0.0, 1.0 - z * z));
  return {rho * std::cos(phi), rho * std::sin(phi), z};
}

// Uniform (Haar) random rotation from a uniform unit quaternion (Shoemake).
inline mat3 random_rotation(philox_stream& rng) {
  const double u1 = rng.uniform(), u2 = rng.uniform(), u3 = rng.uniform();
  const double a = std::sqrt(1.0 - u1), b = std::sqrt(u1);
  const double tau = 6.283185307179586;
  const double w = a * std::sin(tau * u2), x = a * std::cos(tau * u2);
  const double y = b * std::sin(tau * u3), z = b * std::cos(tau * u3);
  mat3 r;
  r.m = {1 - 2 * (y * y + z * z), 2 * (x * y - z * w),     2 * (x * z + y * w),
         2 * (x * y + z * w),     1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
         2 * (x * z - y * w),     2 * (y * z + x * w),     1 - 2 * (x * x + y * y)};
  return r;
}

}  // namespace heteroagg
