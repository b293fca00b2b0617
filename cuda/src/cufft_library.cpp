#include "heteroagg_cuda/cufft_library.hpp"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace heteroagg::cuda {

namespace {

// The process-wide loaded library: dlopen handles are process-wide anyway,
// and the library stays loaded until exit, as the loader does with linked ones.
struct loaded_library {
  std::mutex mutex;
  void* handle = nullptr;
  std::string path;
  cufft_functions functions;
};

loaded_library& library() {
  static loaded_library instance;
  return instance;
}

template <class F>
void bind(void* handle, const char* name, F& target) {
  void* symbol = dlsym(handle, name);
  if (!symbol) throw std::runtime_error(std::string("cuFFT library lacks ") + name);
  target = reinterpret_cast<F>(symbol);
}

}  // namespace

const cufft_functions& cufft(const std::vector<std::string>& extra_paths) {
  loaded_library& lib = library();
  const std::lock_guard<std::mutex> lock(lib.mutex);
  if (lib.handle) return lib.functions;
  std::vector<std::string> candidates = extra_paths;
  for (const char* name : {"libcufft.so.12", "libcufft.so.11", "libcufft.so.13", "libcufft.so"})
    candidates.emplace_back(name);
  std::string tried;
  for (const std::string& candidate : candidates) {
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      tried += "\n  " + candidate;
      continue;
    }
    cufft_functions functions;
    bind(handle, "cufftPlanMany", functions.plan_many);
    bind(handle, "cufftExecC2C", functions.exec_c2c);
    bind(handle, "cufftDestroy", functions.destroy);
    lib.handle = handle;
    lib.path = candidate;
    lib.functions = functions;
    return lib.functions;
  }
  throw std::runtime_error(
      "cuFFT could not be loaded; install the CUDA toolkit or the nvidia-cufft wheel. Tried:" + tried);
}

std::string cufft_path() {
  loaded_library& lib = library();
  const std::lock_guard<std::mutex> lock(lib.mutex);
  return lib.path;
}

}  // namespace heteroagg::cuda
