// Cancellation of the long STEM calls: a set flag stops them, and the
// multislice progress callback is polled while no position has finished.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "heteroagg/multislice.hpp"
#include "heteroagg/potential.hpp"

using heteroagg_test::check;
using namespace heteroagg;

namespace {

template <class Call>
bool throws_cancelled(Call&& call) {
  try {
    call();
  } catch (const multislice_cancelled&) {
    return true;
  } catch (const potential_cancelled&) {
    return true;
  }
  return false;
}

void test_a_set_flag_stops_potentials_and_transmission() {
  const grid2d grid{64, 64, 0.2, 0.2};
  const std::vector<double> positions = {3.0, 4.0, 1.0, 8.0, 2.0, 3.0};
  const std::vector<int> numbers = {8, 22};
  potential_request request;
  request.grid = grid;
  request.slice_edges = {0.0, 2.0, 4.0};
  request.atoms = {positions.data(), numbers.data(), 2};
  request.threads = 2;
  const projected_form_factor form = [](int z, double k2) { return z * std::exp(-k2); };
  std::atomic<bool> cancel{true};
  check(throws_cancelled([&] { projected_potentials(request, form, &cancel); }),
        "projected_potentials stops when its cancel flag is set");
  cancel = false;
  const std::vector<float> v = projected_potentials(request, form, &cancel);
  check(v.size() == 2 * 64 * 64, "projected_potentials runs with a clear flag");
  cancel = true;
  check(throws_cancelled([&] { make_transmission(grid, v.data(), {2.0, 2.0}, 200e3, 2, &cancel); }),
        "make_transmission stops when its cancel flag is set");
}

// One position through many slices: the callback is polled (with 0 done)
// before the position finishes, and its false stops the run within a slice.
void test_progress_is_polled_and_stops_a_position_in_flight() {
  const grid2d grid{32, 32, 0.4, 0.4};
  const std::size_t slices = 2000;
  const std::vector<float> potentials(slices * 32 * 32, 1.0f);
  const transmission_stack stack = make_transmission(grid, potentials.data(), std::vector<double>(slices, 2.0), 200e3, 2);
  multislice_request r;
  r.stack = &stack;
  r.optics.energy = 200e3;
  r.detectors = {radial_detector{10.0, 20.0, {}, {}}};
  r.exit_planes = {slices};
  const std::vector<double> at = {6.0, 6.0};  // x, y (Å)
  r.positions = at.data();
  r.n_positions = 1;
  r.threads = 1;
  struct polls {
    int calls = 0;
    std::size_t last = 99;
  } seen;
  auto stop_at_once = [](std::size_t done, void* context) {
    auto* p = static_cast<polls*>(context);
    ++p->calls;
    p->last = done;
    return false;
  };
  std::vector<float> out(1);
  const bool stopped = throws_cancelled([&] { run_multislice(r, out.data(), stop_at_once, &seen); });
  check(stopped && seen.calls == 1 && seen.last == 0,
        "multislice polls its progress before a position finishes and stops within it");
}

}  // namespace

int main() {
  test_a_set_flag_stops_potentials_and_transmission();
  test_progress_is_polled_and_stops_a_position_in_flight();
  return heteroagg_test::finish("cancellation");
}
