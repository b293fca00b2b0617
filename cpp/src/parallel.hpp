// A minimal work-sharing loop over std::thread, private to the library.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace heteroagg::detail {

// `threads` itself when positive, else the hardware's thread count (at least 1).
inline unsigned resolve_threads(unsigned threads) {
  if (threads > 0) return threads;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? hardware : 1;
}

// The number of workers parallel_for runs for `count` indices.
inline unsigned workers_for(std::size_t count, unsigned threads) {
  return static_cast<unsigned>(std::min<std::size_t>(resolve_threads(threads), std::max<std::size_t>(count, 1)));
}

// Runs body(index, worker) for every index in [0, count) on up to `threads`
// workers (the calling thread is worker 0), handing out indices one at a
// time.  The first exception stops the loop and is rethrown.
template <class Body>
void parallel_for(std::size_t count, unsigned threads, Body&& body) {
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&](unsigned worker) {
    try {
      for (std::size_t i = next++; i < count; i = next++) body(i, worker);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = count;
    }
  };
  const unsigned n = workers_for(count, threads);
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < n; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace heteroagg::detail
