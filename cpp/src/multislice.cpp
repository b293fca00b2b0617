#include "heteroagg/multislice.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

namespace heteroagg {

using detail::parallel_for;
using detail::resolve_threads;
using detail::workers_for;

namespace {

// CODATA 2014 values, the ones ase (and so abTEM) uses, for exact agreement.
constexpr double electron_charge = 1.6021766208e-19;  // C
constexpr double electron_mass = 9.10938356e-31;      // kg
constexpr double speed_of_light = 299792458.0;        // m/s
constexpr double planck = 6.62607004e-34;             // J s
constexpr double pi = 3.14159265358979323846;

}  // namespace

void check_grid(const grid2d& grid, const char* what) {
  if (grid.ny == 0 || grid.nx == 0 || !(grid.dy > 0.0) || !(grid.dx > 0.0) || !std::isfinite(grid.dy) ||
      !std::isfinite(grid.dx))
    throw std::invalid_argument(std::string(what) + ": the grid needs pixels of positive, finite size");
  if (grid.nx > max_grid_pixels / grid.ny)
    throw std::invalid_argument(std::string(what) + ": a grid of " + std::to_string(grid.ny) + " x " +
                                std::to_string(grid.nx) + " pixels exceeds the " +
                                std::to_string(max_grid_pixels) + " a grid may hold");
}

double electron_wavelength(double energy) {
  if (!(energy > 0.0) || !std::isfinite(energy))
    throw std::invalid_argument("electron energy must be positive and finite (eV)");
  const double rest = 2.0 * electron_mass * speed_of_light * speed_of_light / electron_charge;
  return planck * speed_of_light / std::sqrt(energy * (rest + energy)) / electron_charge * 1e10;
}

double interaction_constant(double energy) {
  const double mass = electron_mass * (1.0 + electron_charge * energy /
                                                 (electron_mass * speed_of_light * speed_of_light));
  const double wavelength_m = electron_wavelength(energy) * 1e-10;
  return 2.0 * pi * mass * electron_charge * wavelength_m / (planck * planck) * 1e-10;
}

double band_limit_angle(const grid2d& grid, double wavelength) {
  const double cutoff = (2.0 / 3.0) / std::max(grid.dx, grid.dy) / 2.0;  // 1/Å
  return cutoff * wavelength * 1e3;
}

std::vector<float> antialias_aperture(const grid2d& grid) {
  check_grid(grid, "antialias aperture");
  const double d = std::max(grid.dx, grid.dy);
  const double cutoff = (2.0 / 3.0) / d / 2.0;
  const double taper = 0.01 / d;
  std::vector<float> out(grid.ny * grid.nx);
  for (std::size_t iy = 0; iy < grid.ny; ++iy) {
    const double ky = fft_frequency(iy, grid.ny, grid.dy);
    for (std::size_t ix = 0; ix < grid.nx; ++ix) {
      const double kx = fft_frequency(ix, grid.nx, grid.dx);
      const double k = std::sqrt(kx * kx + ky * ky);
      double a = 1.0;
      if (k > cutoff)
        a = 0.0;
      else if (k > cutoff - taper)
        a = 0.5 * (1.0 + std::cos(pi * (k - cutoff + taper) / taper));
      out[iy * grid.nx + ix] = static_cast<float>(a);
    }
  }
  return out;
}

void probe_reciprocal(const grid2d& grid, const probe_optics& optics, double x, double y, complex64* out) {
  check_grid(grid, "probe");
  if (!(optics.semiangle > 0.0) || !std::isfinite(optics.semiangle))
    throw std::invalid_argument("probe: the aperture semiangle must be positive and finite (mrad)");
  for (const aberration& a : optics.aberrations)
    if (a.n < 1 || a.m < 0 || !std::isfinite(a.c) || !std::isfinite(a.angle))
      throw std::invalid_argument("probe: aberrations need orders n >= 1, m >= 0 and finite coefficients");
  const double wavelength = electron_wavelength(optics.energy);
  const double cutoff = optics.semiangle * 1e-3;  // rad
  // angular pixel size (rad) per axis, for the one-pixel soft aperture edge
  const double sample_x = wavelength / (static_cast<double>(grid.nx) * grid.dx);
  const double sample_y = wavelength / (static_cast<double>(grid.ny) * grid.dy);
  double norm = 0.0;
  for (std::size_t iy = 0; iy < grid.ny; ++iy) {
    const double ky = fft_frequency(iy, grid.ny, grid.dy);
    for (std::size_t ix = 0; ix < grid.nx; ++ix) {
      const double kx = fft_frequency(ix, grid.nx, grid.dx);
      const double alpha = wavelength * std::sqrt(kx * kx + ky * ky);
      const double phi = std::atan2(ky, kx);
      double aperture = 1.0;
      if (ix != 0 || iy != 0) {
        const double edge = std::hypot(std::cos(phi) * sample_x, std::sin(phi) * sample_y);
        aperture = std::clamp((cutoff - alpha) / edge + 0.5, 0.0, 1.0);
      }
      std::complex<double> value(0.0, 0.0);
      if (aperture > 0.0) {
        double chi = 0.0;
        for (const aberration& a : optics.aberrations)
          chi += a.c * std::pow(alpha, a.n + 1) / (a.n + 1) * std::cos(a.m * (phi - a.angle));
        chi *= 2.0 * pi / wavelength;
        const double shift = -2.0 * pi * (kx * x + ky * y);
        value = aperture * std::polar(1.0, shift - chi);
      }
      out[iy * grid.nx + ix] = complex64(static_cast<float>(value.real()), static_cast<float>(value.imag()));
      norm += aperture * aperture;
    }
  }
  if (!(norm > 0.0))
    throw std::invalid_argument("probe: the aperture holds no pixel; refine the grid or widen the aperture");
  const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (std::size_t i = 0; i < grid.ny * grid.nx; ++i) out[i] *= scale;
}

double radial_detector::weight(double alpha) const {
  if (angles.empty()) return alpha >= inner && alpha < outer ? 1.0 : 0.0;
  if (alpha < angles.front() || alpha > angles.back()) return 0.0;
  const auto hi = std::upper_bound(angles.begin(), angles.end(), alpha);
  if (hi == angles.end()) return weights.back();
  const std::size_t j = static_cast<std::size_t>(hi - angles.begin());
  const double t = (alpha - angles[j - 1]) / (angles[j] - angles[j - 1]);
  return weights[j - 1] + t * (weights[j] - weights[j - 1]);
}

double radial_detector::max_angle() const {
  if (angles.empty()) return outer;
  for (std::size_t j = weights.size(); j-- > 0;)
    if (weights[j] != 0.0) return j + 1 < angles.size() ? angles[j + 1] : angles[j];
  return 0.0;
}

transmission_stack make_transmission(const grid2d& grid, const float* potentials,
                                     const std::vector<double>& thickness, double energy,
                                     unsigned threads, const std::atomic<bool>* cancel) {
  check_grid(grid, "transmission");
  const double sigma = interaction_constant(energy);
  transmission_stack stack;
  stack.grid = grid;
  stack.thickness = thickness;
  const std::size_t area = grid.ny * grid.nx;
  stack.data.resize(thickness.size() * area);
  const fft2_plan plan(grid.ny, grid.nx);
  const std::vector<float> aperture = antialias_aperture(grid);
  parallel_for(thickness.size(), resolve_threads(threads), [&](std::size_t s, unsigned) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) throw multislice_cancelled();
    complex64* t = stack.data.data() + s * area;
    const float* v = potentials + s * area;
    // single precision, like abTEM's complex64 transmission functions
    const auto sigma_f = static_cast<float>(sigma);
    for (std::size_t i = 0; i < area; ++i) {
      const float phase = sigma_f * v[i];
      t[i] = complex64(std::cos(phase), std::sin(phase));
    }
    plan.forward(t);
    for (std::size_t i = 0; i < area; ++i) t[i] *= aperture[i];
    plan.inverse(t);
  });
  return stack;
}

namespace {

// Everything one worker needs, allocated once per worker.
struct probe_worker {
  std::vector<complex64> psi, ramp_x, ramp_y;
  std::vector<double> sums;
  probe_worker(std::size_t ny, std::size_t nx, std::size_t detectors)
      : psi(ny * nx), ramp_x(nx), ramp_y(ny), sums(detectors) {}
};

void check_detector(const radial_detector& d) {
  if (d.angles.empty()) {
    if (!(d.inner >= 0.0 && d.inner < d.outer))
      throw std::invalid_argument("multislice: an annular detector needs 0 <= inner < outer (mrad)");
    return;
  }
  if (d.angles.size() < 2 || d.weights.size() != d.angles.size())
    throw std::invalid_argument("multislice: a detector curve needs as many weights as angles, at least two");
  for (std::size_t j = 0; j < d.angles.size(); ++j) {
    if (!std::isfinite(d.angles[j]) || !std::isfinite(d.weights[j]) || d.weights[j] < 0.0)
      throw std::invalid_argument("multislice: detector angles and weights must be finite, weights >= 0");
    if (j > 0 && !(d.angles[j] > d.angles[j - 1]))
      throw std::invalid_argument("multislice: detector angles must increase strictly");
  }
}

void validate_request(const multislice_request& r) {
  if (!r.stack || r.stack->slices() == 0) throw std::invalid_argument("multislice: no slices to propagate through");
  check_grid(r.stack->grid, "multislice");
  if (r.detectors.empty()) throw std::invalid_argument("multislice: no detector");
  for (const radial_detector& d : r.detectors) check_detector(d);
  for (const double t : r.stack->thickness)
    if (!(t >= 0.0) || !std::isfinite(t)) throw std::invalid_argument("multislice: slice thicknesses must be finite and >= 0");
  if (r.exit_planes.empty()) throw std::invalid_argument("multislice: no exit plane");
  for (std::size_t p = 0; p < r.exit_planes.size(); ++p) {
    const std::size_t plane = r.exit_planes[p];
    if (plane < 1 || plane > r.stack->slices() || (p > 0 && plane <= r.exit_planes[p - 1]))
      throw std::invalid_argument("multislice: exit planes must be strictly increasing slice counts in [1, " +
                                  std::to_string(r.stack->slices()) + "]");
  }
  const bool windowed = r.window_ny > 0 || r.window_nx > 0;
  if (windowed && (r.window_ny > r.stack->grid.ny || r.window_nx > r.stack->grid.nx || r.window_ny == 0 ||
                   r.window_nx == 0))
    throw std::invalid_argument("multislice: the probe window must fit in the potential's grid");
  if (r.n_positions > 0 && !r.positions) throw std::invalid_argument("multislice: positions missing");
  // Positions are turned into whole pixels; 2^50 pixels keeps that exact and far from overflow.
  const double max_offset = std::ldexp(1.0, 50) * std::min(r.stack->grid.dx, r.stack->grid.dy);
  for (std::size_t i = 0; i < 2 * r.n_positions; ++i)
    if (!(std::fabs(r.positions[i]) <= max_offset))
      throw std::invalid_argument("multislice: probe positions must be finite and within 2^50 pixels of the origin");
}

}  // namespace

multislice_setup prepare_multislice(const multislice_request& r) {
  validate_request(r);
  const transmission_stack& stack = *r.stack;
  const grid2d& full = stack.grid;
  multislice_setup setup;
  setup.windowed = r.window_ny > 0;
  setup.window = {setup.windowed ? r.window_ny : full.ny, setup.windowed ? r.window_nx : full.nx, full.dy, full.dx};
  const grid2d& window = setup.window;
  const std::size_t area = window.ny * window.nx;
  const double wavelength = electron_wavelength(r.optics.energy);
  const double limit = band_limit_angle(window, wavelength);
  for (const radial_detector& d : r.detectors)
    if (d.max_angle() > limit * (1.0 + 1e-9))
      throw std::invalid_argument("multislice: a detector reaches " + std::to_string(d.max_angle()) +
                                  " mrad, beyond the largest angle this sampling allows (" +
                                  std::to_string(limit) + " mrad); refine the sampling");
  const std::vector<float> aperture = antialias_aperture(window);
  std::vector<double> distinct;
  setup.propagator_of.resize(stack.slices());
  for (std::size_t s = 0; s < stack.slices(); ++s) {
    auto it = std::find(distinct.begin(), distinct.end(), stack.thickness[s]);
    setup.propagator_of[s] = static_cast<std::size_t>(it - distinct.begin());
    if (it == distinct.end()) distinct.push_back(stack.thickness[s]);
  }
  setup.propagators.assign(distinct.size(), std::vector<complex64>(area));
  setup.weights.assign(r.detectors.size(), std::vector<float>(area));
  for (std::size_t iy = 0; iy < window.ny; ++iy) {
    const double ky = fft_frequency(iy, window.ny, window.dy);
    for (std::size_t ix = 0; ix < window.nx; ++ix) {
      const double kx = fft_frequency(ix, window.nx, window.dx);
      const double k2 = kx * kx + ky * ky;
      const std::size_t i = iy * window.nx + ix;
      for (std::size_t p = 0; p < distinct.size(); ++p)
        setup.propagators[p][i] =
            aperture[i] * std::polar(1.0f, static_cast<float>(-pi * wavelength * distinct[p] * k2));
      const double alpha = wavelength * std::sqrt(k2) * 1e3;
      for (std::size_t d = 0; d < r.detectors.size(); ++d)
        setup.weights[d][i] = static_cast<float>(r.detectors[d].weight(alpha));
    }
  }
  setup.base.resize(area);
  probe_reciprocal(window, r.optics, 0.0, 0.0, setup.base.data());
  return setup;
}

probe_placement place_probe(const multislice_request& r, const multislice_setup& setup, std::size_t position) {
  const grid2d& full = r.stack->grid;
  const double x = r.positions[2 * position], y = r.positions[2 * position + 1];
  probe_placement p;
  if (setup.windowed) {
    p.oy = static_cast<std::ptrdiff_t>(std::floor(y / full.dy)) - static_cast<std::ptrdiff_t>(setup.window.ny / 2);
    p.ox = static_cast<std::ptrdiff_t>(std::floor(x / full.dx)) - static_cast<std::ptrdiff_t>(setup.window.nx / 2);
  }
  p.px = x - static_cast<double>(p.ox) * full.dx;
  p.py = y - static_cast<double>(p.oy) * full.dy;
  return p;
}

void run_multislice(const multislice_request& r, float* out, progress_callback progress, void* context) {
  const multislice_setup setup = prepare_multislice(r);
  const transmission_stack& stack = *r.stack;
  const grid2d& full = stack.grid;
  const grid2d& window = setup.window;
  const fft2_plan plan(window.ny, window.nx);
  std::vector<std::vector<float>> propagators, weight_layouts;
  for (const auto& p : setup.propagators) propagators.push_back(plan.column_layout(p.data()));
  for (const auto& w : setup.weights) weight_layouts.push_back(plan.column_layout(w.data()));
  std::vector<const float*> weights, no_weights;
  for (const auto& w : weight_layouts) weights.push_back(w.data());
  // one workspace per worker that runs: no more than there are probe positions
  const unsigned threads = workers_for(r.n_positions, r.threads);
  std::vector<probe_worker> workers;
  workers.reserve(threads);
  for (unsigned w = 0; w < threads; ++w) workers.emplace_back(window.ny, window.nx, r.detectors.size());
  const std::size_t planes = r.exit_planes.size(), detectors = r.detectors.size();
  std::atomic<std::size_t> finished{0};
  std::atomic<bool> cancelled{false};

  auto run_probe = [&](std::size_t position, unsigned worker) {
    if (cancelled) return;
    probe_worker& work = workers[worker];
    complex64* psi = work.psi.data();
    const probe_placement place = place_probe(r, setup, position);
    const std::ptrdiff_t oy = place.oy, ox = place.ox;
    const double px = place.px, py = place.py;
    for (std::size_t ix = 0; ix < window.nx; ++ix) {
      const double phase = -2.0 * pi * fft_frequency(ix, window.nx, window.dx) * px;
      work.ramp_x[ix] = complex64(static_cast<float>(std::cos(phase)), static_cast<float>(std::sin(phase)));
    }
    for (std::size_t iy = 0; iy < window.ny; ++iy) {
      const double phase = -2.0 * pi * fft_frequency(iy, window.ny, window.dy) * py;
      work.ramp_y[iy] = complex64(static_cast<float>(std::cos(phase)), static_cast<float>(std::sin(phase)));
    }
    for (std::size_t iy = 0; iy < window.ny; ++iy)
      for (std::size_t ix = 0; ix < window.nx; ++ix)
        psi[iy * window.nx + ix] = setup.base[iy * window.nx + ix] * (work.ramp_y[iy] * work.ramp_x[ix]);
    plan.inverse(psi);
    // Each slice is one pass over rows (R T R^-1: the transmission between
    // half-transforms along x) and one over columns (C^-1 P C, reading the
    // detectors where the wave is fully in Fourier space), so the wave is
    // read and written twice per slice; between passes its rows stay
    // transformed.
    std::size_t next_plane = 0;
    for (std::size_t s = 0; s < stack.slices(); ++s) {
      if (cancelled.load(std::memory_order_relaxed)) return;  // within a slice of Ctrl-C
      plan.rows_pass(psi, periodic_window{stack.slice(s), full.ny, full.nx, oy, ox}, s == 0);
      const bool read = next_plane < planes && r.exit_planes[next_plane] == s + 1;
      const bool last = read && next_plane + 1 == planes;
      std::fill(work.sums.begin(), work.sums.end(), 0.0);
      plan.columns_pass(psi, propagators[setup.propagator_of[s]].data(), read ? weights : no_weights,
                        work.sums.data(), !last);
      if (read) {
        for (std::size_t d = 0; d < detectors; ++d)
          out[(next_plane * detectors + d) * r.n_positions + position] = static_cast<float>(work.sums[d]);
        ++next_plane;
      }
      if (last) break;  // nothing left to read out
    }
    ++finished;
  };

  if (!progress) {
    parallel_for(r.n_positions, threads, run_probe);
    return;
  }
  // With a progress callback the calling thread only reports; workers compute.
  std::exception_ptr failure;
  std::atomic<bool> stopped{false};
  std::thread runner([&] {
    try {
      parallel_for(r.n_positions, threads, run_probe);
    } catch (...) {
      failure = std::current_exception();
    }
    stopped = true;
  });
  std::exception_ptr progress_failure;
  while (true) {
    const std::size_t done = finished.load();
    const bool all = stopped.load();
    try {
      if (!cancelled && !progress(done, context)) cancelled = true;
    } catch (...) {  // the workers must still be joined
      progress_failure = std::current_exception();
      cancelled = true;
    }
    if (all || cancelled) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  runner.join();
  if (failure) std::rethrow_exception(failure);
  if (progress_failure) std::rethrow_exception(progress_failure);
  if (cancelled) throw multislice_cancelled();
}

}  // namespace heteroagg
