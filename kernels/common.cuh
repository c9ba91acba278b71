// Helpers shared by every kernel file: error checks that become Python exceptions,
// ceil_div, and the launch check that names the kernel and its shapes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace pyengine {

// A CUDA failure, thrown as std::runtime_error: pybind11 turns it into a Python RuntimeError.
inline void cuda_fail(cudaError_t err, const char* what, const char* file, int line) {
  std::ostringstream msg;
  msg << "CUDA error in " << what << ": " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err)
      << ") at " << file << ":" << line;
  throw std::runtime_error(msg.str());
}

#define CUDA_CHECK(call)                                                   \
  do {                                                                     \
    cudaError_t err_ = (call);                                             \
    if (err_ != cudaSuccess) ::pyengine::cuda_fail(err_, #call, __FILE__, __LINE__); \
  } while (0)

// After every launch: a bad configuration (too many threads, too much shared memory)
// shows up here; `desc` names the kernel and the shapes, e.g. "sgemm m=17 n=33 k=65".
inline void check_launch(const std::string& desc) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    std::ostringstream msg;
    msg << "CUDA launch of " << desc << " failed: " << cudaGetErrorName(err) << " ("
        << cudaGetErrorString(err) << ")";
    throw std::runtime_error(msg.str());
  }
}

template <typename T>
__host__ __device__ constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

// Device pointers and streams cross the Python boundary as integers.
template <typename T>
inline T* dptr(std::uintptr_t p) { return reinterpret_cast<T*>(p); }
inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// An attribute of the current device. Callers keep it in a function-local static, so it is
// asked once per process (of the first device asked): device_attribute throws a CUDA error,
// device_attribute_or gives `fallback` when the runtime cannot answer.
inline int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

inline int device_attribute_or(cudaDeviceAttr attr, int fallback) {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess)
    return fallback;
  return v;
}

// Shared memory one block may use when it opts in (above the default 48 KB), asked once.
inline int max_smem_optin() {
  static const int bytes = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  return bytes;
}

// Grid size for grid-stride loops: enough blocks to fill the device, never more than the work.
inline int grid_for(long long n, int threads, int max_blocks = 65535) {
  long long blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<int>(blocks < max_blocks ? blocks : max_blocks);
}

}  // namespace pyengine
