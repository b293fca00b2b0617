// Long calls that Ctrl-C can stop: the work runs on its own thread with the
// GIL released while the calling thread lets Python handle its signals.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <future>

namespace heteroagg::bindings {

// Runs work(cancel) on a worker thread.  Every 50 ms the calling thread takes
// the GIL and runs Python's signal handlers; when one raises (Ctrl-C raises
// KeyboardInterrupt), `cancel` is set, the worker is waited for, and the
// Python exception propagates.  Otherwise the work's result, or its C++
// exception, is returned or rethrown as if it had been called directly.
template <class Work>
auto call_interruptibly(Work work) {
  std::atomic<bool> cancel{false};
  auto result = std::async(std::launch::async, [&work, &cancel] { return work(cancel); });
  bool interrupted = false;
  {
    pybind11::gil_scoped_release release;
    while (result.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      pybind11::gil_scoped_acquire acquire;
      if (PyErr_CheckSignals() != 0) {
        interrupted = true;
        cancel.store(true);
        break;
      }
    }
    result.wait();
  }
  if (interrupted) throw pybind11::error_already_set();
  return result.get();
}

}  // namespace heteroagg::bindings
