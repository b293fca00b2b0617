// Multislice propagation of STEM probes through transmission functions.
//
// Units follow abTEM: lengths in Å, energies in eV, angles in mrad, projected
// potentials in V·Å.  Arrays are row-major (y, x) with x fastest; complex data
// is complex64 and contiguous, so a device twin can take the same buffers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "heteroagg/fft.hpp"

namespace heteroagg {

// Relativistic electron wavelength (Å) at `energy` (eV).
double electron_wavelength(double energy);
// Relativistic interaction constant sigma (1 / (V·Å)): the phase of a
// projected potential V_z is sigma * V_z.
double interaction_constant(double energy);

// A rectangular grid of ny x nx pixels of dy x dx Å.
struct grid2d {
  std::size_t ny = 0, nx = 0;
  double dy = 0.0, dx = 0.0;
};

// Most pixels a grid may hold (16 GiB of complex64 values).
constexpr std::size_t max_grid_pixels = std::size_t{1} << 31;

// Throws std::invalid_argument, naming `what`, unless the grid has pixels of
// positive, finite size and at most max_grid_pixels of them.
void check_grid(const grid2d& grid, const char* what);

// Spatial frequency (1/Å) of FFT bin i of n bins of d Å (numpy.fft.fftfreq).
inline double fft_frequency(std::size_t i, std::size_t n, double d) {
  const auto k = static_cast<double>(i);
  const auto nn = static_cast<double>(n);
  return (i < (n + 1) / 2 ? k : k - nn) / (nn * d);
}

// Largest scattering angle (mrad) kept by the 2/3 band limit of a grid.
double band_limit_angle(const grid2d& grid, double wavelength);

// The Fourier-space band limit applied at every step (abTEM's convention):
// 1 below 2/3 of the Nyquist frequency of the coarser axis, a cosine taper of
// width 0.01 / d inside it, 0 beyond.
std::vector<float> antialias_aperture(const grid2d& grid);

// One polar aberration coefficient: chi += 2 pi / lambda * c * alpha^(n+1) /
// (n+1) * cos(m (phi - angle)), with c in Å and angle in rad (abTEM's Cnm and
// phinm; defocus is -C10).
struct aberration {
  int n = 1;
  int m = 0;
  double c = 0.0;
  double angle = 0.0;
};

struct probe_optics {
  double energy = 300e3;   // eV
  double semiangle = 20.0; // mrad, soft-edged aperture as in abTEM
  std::vector<aberration> aberrations;
};

// Probe wave function in reciprocal space on `grid`, centred at (x, y) Å from
// pixel (0, 0) and normalised so that sum |psi_k|^2 = 1.
void probe_reciprocal(const grid2d& grid, const probe_optics& optics, double x, double y,
                      complex64* out);

// Radially symmetric detector: a sensitivity weight as a function of the
// scattering angle alpha (mrad).  With no curve it is annular, weight 1 for
// inner <= alpha < outer; with a curve it interpolates (angles, weights)
// linearly and is zero outside the curve.
struct radial_detector {
  double inner = 0.0, outer = 0.0;
  std::vector<double> angles, weights;
  double weight(double alpha) const;
  // Largest angle with a nonzero weight (mrad).
  double max_angle() const;
};

// Band-limited transmission functions of the slices of one region: slice s
// is data[s * ny * nx ...], and thickness[s] the distance (Å) it is followed by.
struct transmission_stack {
  grid2d grid;
  std::vector<double> thickness;
  std::vector<complex64> data;
  std::size_t slices() const { return thickness.size(); }
  const complex64* slice(std::size_t s) const { return data.data() + s * grid.ny * grid.nx; }
};

// exp(i sigma V) of projected potentials (slices x ny x nx, V·Å), band-limited
// by the antialias aperture of the grid, as abTEM does.  A `cancel` flag set
// from another thread stops it within a slice (multislice_cancelled).
transmission_stack make_transmission(const grid2d& grid, const float* potentials,
                                     const std::vector<double>& thickness, double energy,
                                     unsigned threads, const std::atomic<bool>* cancel = nullptr);

struct multislice_request {
  const transmission_stack* stack = nullptr;
  probe_optics optics;
  std::vector<radial_detector> detectors;
  // Numbers of slices after which the detectors read out (1..slices(),
  // strictly increasing).  Reading out costs no extra transform: the
  // detectors integrate |psi_k|^2 right after each step's forward FFT.
  std::vector<std::size_t> exit_planes;
  // Window propagated around each probe (pixels of the stack grid, FFT
  // sizes), taken periodically from the stack; 0 x 0 means the whole grid.
  std::size_t window_ny = 0, window_nx = 0;
  // Probe positions (x, y) in Å from the stack's pixel (0, 0).
  const double* positions = nullptr;
  std::size_t n_positions = 0;
  unsigned threads = 0;  // 0: all hardware threads
};

// Called from the calling thread about every 50 ms with the number of
// finished positions (the same number again while none finishes); returning
// false stops the run within a slice of each position in flight
// (run_multislice then throws multislice_cancelled).
using progress_callback = bool (*)(std::size_t done, void* context);

struct multislice_cancelled : std::runtime_error {
  multislice_cancelled() : std::runtime_error("multislice cancelled") {}
};

// What every probe of a request shares, computed once on the host and used by
// the CPU path and its CUDA twin alike.
struct multislice_setup {
  grid2d window;          // the grid each probe is propagated on
  bool windowed = false;  // false: the window is the stack's whole grid
  // Fourier-space propagators with the band limit folded in, one per distinct
  // slice thickness, and which one each slice uses.
  std::vector<std::vector<complex64>> propagators;
  std::vector<std::size_t> propagator_of;
  // Detector weights on the window's reciprocal grid, one array per detector.
  std::vector<std::vector<float>> weights;
  // The probe at the window origin in reciprocal space.
  std::vector<complex64> base;
};

// Validates `request` (std::invalid_argument) and computes its setup.  Only
// the stack's grid and thicknesses are read, not its data.
multislice_setup prepare_multislice(const multislice_request& request);

// Where probe `position` sits: the window's origin in whole pixels of the
// stack grid (so the potential is read without interpolation) and the
// probe's offset (Å) from that origin, which becomes a phase ramp.
struct probe_placement {
  std::ptrdiff_t oy = 0, ox = 0;
  double py = 0.0, px = 0.0;
};
probe_placement place_probe(const multislice_request& request, const multislice_setup& setup,
                            std::size_t position);

// Intensities as fractions of the incident beam:
// out[(plane * detectors + detector) * n_positions + position].  Throws
// std::invalid_argument on inconsistent requests.
void run_multislice(const multislice_request& request, float* out, progress_callback progress = nullptr,
                    void* context = nullptr);

}  // namespace heteroagg
