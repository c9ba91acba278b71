// activation.cu — elementwise relu, leaky_relu, gelu (exact / tanh), sigmoid, tanh, selu,
// forward y = f(x) and backward gx = gy * f'(x), float32, any length.
//
// Technique: grid-stride loops sized to fill the device; when every pointer is 16-byte
// aligned each thread moves float4s (one 16-byte load per operand), and a scalar loop
// finishes the n % 4 tail. The activation is a run-time switch: uniform across the grid,
// so it costs one predictable branch per element, not a divergence. Memory-bound: the
// floor is (2 or 4 bytes-per-float streams) / copy bandwidth.
//
// Measured (bench/device_check.sh; ceiling = measured D2D copy bandwidth, 2.8 TB/s):
//   v1 float4 grid-stride, 2^26 floats, H100 80GB HBM3, 2026-11-27: relu fwd 2724 GB/s (0.98 of
//      copy), bwd 2826 (1.02); gelu fwd 2760 (0.99), bwd 2839 (1.02); sigmoid fwd 2654 (0.96).
#include "activation.cuh"
#include "common.cuh"

#include <string>

namespace pyengine {
namespace {

constexpr int kThreads = 256;

__global__ void act_fwd_vec(int act, float param, const float4* __restrict__ x, float4* __restrict__ y,
                            long long n4) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n4;
       i += (long long)gridDim.x * blockDim.x) {
    float4 v = x[i];
    v.x = act_forward(act, v.x, param);
    v.y = act_forward(act, v.y, param);
    v.z = act_forward(act, v.z, param);
    v.w = act_forward(act, v.w, param);
    y[i] = v;
  }
}

__global__ void act_fwd_scalar(int act, float param, const float* __restrict__ x, float* __restrict__ y,
                               long long begin, long long n) {
  for (long long i = begin + blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    y[i] = act_forward(act, x[i], param);
}

__global__ void act_bwd_vec(int act, float param, const float4* __restrict__ gy, const float4* __restrict__ x,
                            const float4* __restrict__ y, float4* __restrict__ gx, long long n4) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n4;
       i += (long long)gridDim.x * blockDim.x) {
    const float4 g = gy[i], a = x[i], b = y[i];
    float4 r;
    r.x = act_backward(act, g.x, a.x, b.x, param);
    r.y = act_backward(act, g.y, a.y, b.y, param);
    r.z = act_backward(act, g.z, a.z, b.z, param);
    r.w = act_backward(act, g.w, a.w, b.w, param);
    gx[i] = r;
  }
}

__global__ void act_bwd_scalar(int act, float param, const float* __restrict__ gy, const float* __restrict__ x,
                               const float* __restrict__ y, float* __restrict__ gx, long long begin, long long n) {
  for (long long i = begin + blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    gx[i] = act_backward(act, gy[i], x[i], y[i], param);
}

bool aligned16(std::uintptr_t p) { return p % 16 == 0; }

// Enough resident blocks to cover every SM several times; the grid-stride loop does the rest.
int act_grid(long long work) { return grid_for(work, kThreads, 8 * 1024); }

std::string desc(const char* kernel, int act, long long n) {
  return std::string(kernel) + " act=" + std::to_string(act) + " n=" + std::to_string(n);
}

void check_act(int act) {
  if (act < ACT_RELU || act > ACT_SELU)
    throw std::invalid_argument("activation: unknown activation code " + std::to_string(act));
}

}  // namespace

void activation_forward(int act, float param, std::uintptr_t x, std::uintptr_t y, long long n,
                        std::uintptr_t stream) {
  check_act(act);
  if (n <= 0) return;
  cudaStream_t st = as_stream(stream);
  long long done = 0;
  if (aligned16(x) && aligned16(y) && n >= 4) {
    const long long n4 = n / 4;
    act_fwd_vec<<<act_grid(n4), kThreads, 0, st>>>(act, param, dptr<const float4>(x), dptr<float4>(y), n4);
    check_launch(desc("act_fwd_vec", act, n));
    done = n4 * 4;
  }
  if (done < n) {
    act_fwd_scalar<<<act_grid(n - done), kThreads, 0, st>>>(act, param, dptr<const float>(x), dptr<float>(y),
                                                            done, n);
    check_launch(desc("act_fwd_scalar", act, n));
  }
}

void activation_backward(int act, float param, std::uintptr_t gy, std::uintptr_t x, std::uintptr_t y,
                         std::uintptr_t gx, long long n, std::uintptr_t stream) {
  check_act(act);
  if (n <= 0) return;
  cudaStream_t st = as_stream(stream);
  long long done = 0;
  if (aligned16(gy) && aligned16(x) && aligned16(y) && aligned16(gx) && n >= 4) {
    const long long n4 = n / 4;
    act_bwd_vec<<<act_grid(n4), kThreads, 0, st>>>(act, param, dptr<const float4>(gy), dptr<const float4>(x),
                                                   dptr<const float4>(y), dptr<float4>(gx), n4);
    check_launch(desc("act_bwd_vec", act, n));
    done = n4 * 4;
  }
  if (done < n) {
    act_bwd_scalar<<<act_grid(n - done), kThreads, 0, st>>>(act, param, dptr<const float>(gy),
                                                            dptr<const float>(x), dptr<const float>(y),
                                                            dptr<float>(gx), done, n);
    check_launch(desc("act_bwd_scalar", act, n));
  }
}

}  // namespace pyengine
