// RAII device buffers and error checks shared by the CUDA kernels' host code.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace heteroagg::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

// `count` elements of T in device memory, owned for the object's lifetime.
template <class T>
class device_array {
 public:
  explicit device_array(std::size_t count) : count_(count) {
    if (count_ > 0) check(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)), "cudaMalloc");
  }
  ~device_array() { cudaFree(ptr_); }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;

  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  void upload(const T* host, std::size_t count, std::size_t offset = 0) {
    if (count > 0)
      check(cudaMemcpy(ptr_ + offset, host, count * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  void download(T* host, std::size_t count) const {
    if (count > 0) check(cudaMemcpy(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost), "download");
  }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

// Page-locks an existing host buffer (a numpy array, say) for the object's
// lifetime, so that copies between it and the device run at the bus's speed
// instead of through the driver's pageable bounce buffer.  A buffer that
// cannot be registered stays pageable: its copies are then slower, not wrong.
class pinned_host_range {
 public:
  pinned_host_range(void* host, std::size_t bytes) {
    if (host == nullptr || bytes == 0) return;
    if (cudaHostRegister(host, bytes, cudaHostRegisterDefault) == cudaSuccess)
      host_ = host;
    else
      cudaGetLastError();  // a failed registration is not sticky: clear it
  }
  ~pinned_host_range() {
    if (host_ != nullptr) cudaHostUnregister(host_);
  }
  pinned_host_range(const pinned_host_range&) = delete;
  pinned_host_range& operator=(const pinned_host_range&) = delete;

 private:
  void* host_ = nullptr;
};

}  // namespace heteroagg::cuda
