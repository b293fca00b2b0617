// Fast HAADF-STEM images of sphere aggregates from thickness LUTs.
//
// The aggregate (nm) is turned by a rotation and projected along z.  Each
// pixel centre gets, per material, the length of the beam's path through the
// material's spheres; a point that lies in several spheres belongs to the
// lowest-indexed one, as in the atomistic models.  The lengths go through the
// material's optical-density table D(t) = -ln(1 - I(t)), materials add in D,
// and I = 1 - exp(-D).  Then, in order: an amorphous-carbon support film
// (added in D), convolution with the probe intensity, scan-line jitter, shot
// noise for a dose, and the detector's gain, black level and read noise.
//
// Images are row-major (y, x) float32; pixel (i, j) is centred at
// (cx + (j - (nx - 1) / 2) * pixel, cy + (i - (ny - 1) / 2) * pixel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "heteroagg/geometry.hpp"
#include "heteroagg/render_pixel.hpp"

namespace heteroagg {

// Streams of one image's seed.
enum render_stream : std::uint64_t {
  render_stream_rotation = 1,
  render_stream_orientation = 2,
  render_stream_support = 3,
  render_stream_jitter = 4,
  render_stream_shot = 5,
  render_stream_read = 6,
};

// A material's LUT on a uniform thickness grid t_k = k * step_nm.
struct thickness_table {
  double step_nm = 0.0;
  std::vector<double> density;  // -ln(1 - I) at t_k, density[0] = 0
  std::vector<double> spread;   // standard deviation of I over orientations at t_k
  double max_thickness() const { return step_nm * static_cast<double>(density.size() - 1); }
  // The table as plain arrays (valid while the table lives).
  table_view view() const { return table_view{density.data(), spread.data(), density.size(), step_nm}; }
  // D(t) by linear interpolation; beyond the table, D grows in proportion to t.
  double density_at(double t) const;
  // Mean I(t) and its orientation spread.
  double intensity_at(double t) const;
  double spread_at(double t) const;
};

struct render_settings {
  std::size_t ny = 0, nx = 0;
  double pixel_nm = 0.0;
  std::vector<thickness_table> tables;  // indexed by material code
  bool extrapolate = false;             // else thicker paths than a table throw
  bool orientation_spread = false;      // per-particle brightness from the table's spread
  // Support film: thickness (nm, 0 = none), its table and its atom density
  // (1/nm^3), which sets the column-to-column mass fluctuation.
  double support_nm = 0.0;
  thickness_table support;
  double support_atoms_per_nm3 = 0.0;
  // Probe intensity binned onto pixels, (2 * ky + 1) x (2 * kx + 1), sum 1.
  std::vector<float> kernel;
  std::size_t kernel_ry = 0, kernel_rx = 0;
  double scan_jitter_px = 0.0;  // RMS horizontal displacement of each scan line
  double dose = 0.0;            // e / Å^2; 0: no shot noise
  double gain = 1.0, black_level = 0.0, read_noise = 0.0;
};

// One aggregate: n spheres, centres (n, 3) and radii in nm, material codes.
struct render_input {
  const double* centers = nullptr;
  const double* radii = nullptr;
  const std::uint8_t* materials = nullptr;
  std::size_t n = 0;
  bool has_rotation = false;  // else drawn from seed
  mat3 rotation;
  bool has_center = false;    // else the middle of the projected bounding box
  double cx = 0.0, cy = 0.0;  // nm
  std::uint64_t seed = 0;
};

// Outputs; every pointer but image may be null.
struct render_output {
  float* image = nullptr;         // ny * nx
  float* clean = nullptr;         // before blur and noise, ny * nx
  float* thickness = nullptr;     // per material, (materials, ny, nx) nm
  std::int8_t* material = nullptr;   // material with the longest total path, -1 for none
  std::int32_t* particle = nullptr;  // particle with the longest path, -1 for none
  mat3 rotation;
  double cx = 0.0, cy = 0.0;
  bool clipped = false;  // some sphere reaches beyond the field of view
};

// The per-aggregate setup shared by the CPU and CUDA renderers.
struct render_projection {
  std::vector<vec3> centres;  // rotated centres, nm
  std::vector<float> factor;  // per-particle optical-density factor (1 without orientation spread)
  mat3 rotation;
  double cx = 0.0, cy = 0.0;  // nm at the image centre
  double x0 = 0.0, y0 = 0.0;  // nm at the centre of pixel (0, 0)
  bool clipped = false;
};

// Throws std::invalid_argument for inconsistent settings.
void check_render_settings(const render_settings& settings);

// Rotation, projection, field centre, clipping and brightness factors of one
// aggregate.  Throws std::invalid_argument for bad spheres or materials.
render_projection project_aggregate(const render_input& input, const render_settings& settings);

// Throws std::invalid_argument, as the renderer does, when a beam path of
// `deepest_nm` through `material` exceeds its table and extrapolation is off;
// material settings.tables.size() is the support film.
void check_path_length(const render_settings& settings, std::size_t material, double deepest_nm);

// Mean number of film atoms in one pixel's column (0 without a film).
double support_column_atoms(const render_settings& settings);

// Render one image.  Throws std::invalid_argument for bad settings or, without
// `extrapolate`, a path longer than a material's table.
void render_haadf(const render_input& input, const render_settings& settings, render_output& output);

// Render many images on `threads` workers (0: all cores); output[i] for input[i].
void render_haadf_batch(const std::vector<render_input>& inputs, const render_settings& settings,
                        std::vector<render_output>& outputs, unsigned threads);

// Convolve a row-major ny x nx image with a (2 ry + 1) x (2 rx + 1) kernel,
// edges extended by their nearest pixel.
void convolve_replicate(const float* image, std::size_t ny, std::size_t nx, const float* kernel,
                        std::size_t ry, std::size_t rx, float* out);

}  // namespace heteroagg
