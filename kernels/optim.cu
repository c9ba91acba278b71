// optim.cu — fused in-place optimizer updates over one contiguous float32 parameter, with
// PyTorch's formulas (torch.optim.SGD / Adam / AdamW, foreach=False):
//   SGD:  g = grad + wd * p;  with momentum: buf = g on the first step, else
//         buf = momentum * buf + (1 - dampening) * g;  g = nesterov ? g + momentum * buf : buf;
//         p -= lr * g.
//   Adam: decoupled (AdamW): p *= 1 - lr * wd, else g = grad + wd * p;
//         m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2;  amsgrad: vmax = max(vmax, v);
//         p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps).
//
// Technique: one grid-stride pass reads each state once and writes it once, instead of the
// five or six elementwise launches (and their temporaries) the unfused update takes. The
// bias corrections are computed once on the host. Memory-bound: SGD-momentum moves 20 bytes
// per element, Adam 28 (amsgrad 36).
//
// Measured (fill in from bench/device_check.sh; ceiling = measured D2D copy bandwidth):
//   v1 grid-stride, 2^24 parameters: adamw ___ GB/s (___% of copy), sgd momentum ___ GB/s.
//   card: ___  date: ___
#include "common.cuh"
#include "kernels_nn.h"

#include <cmath>
#include <string>

namespace pyengine {
namespace {

constexpr int kThreads = 256;

__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ buf,
                           long long n, float lr, float momentum, float dampening, bool nesterov,
                           float wd, bool first_step) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    float g = grad[i];
    if (wd != 0.f) g += wd * p[i];
    if (buf) {
      const float b = first_step ? g : momentum * buf[i] + (1.f - dampening) * g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    p[i] -= lr * g;
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ m,
                            float* __restrict__ v, float* __restrict__ vmax, long long n, float lr,
                            float beta1, float beta2, float eps, float wd, bool decoupled,
                            float step_size, float inv_sqrt_bc2) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    float w = p[i], g = grad[i];
    if (decoupled)
      w *= 1.f - lr * wd;
    else
      g += wd * w;
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    if (vmax) {
      vi = fmaxf(vmax[i], vi);
      vmax[i] = vi;
    }
    p[i] = w - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

void sgd_step(std::uintptr_t param, std::uintptr_t grad, std::uintptr_t buf, long long n, float lr,
              float momentum, float dampening, bool nesterov, float weight_decay, bool first_step,
              std::uintptr_t stream) {
  if (n <= 0) return;
  sgd_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<float>(param), dptr<const float>(grad), momentum != 0.f ? dptr<float>(buf) : nullptr, n, lr,
      momentum, dampening, nesterov, weight_decay, first_step);
  check_launch("sgd_step n=" + std::to_string(n));
}

void adam_step(std::uintptr_t param, std::uintptr_t grad, std::uintptr_t exp_avg, std::uintptr_t exp_avg_sq,
               std::uintptr_t max_exp_avg_sq, long long n, long long step, float lr, float beta1,
               float beta2, float eps, float weight_decay, bool decoupled, bool amsgrad,
               std::uintptr_t stream) {
  if (n <= 0) return;
  // Bias corrections in double on the host: 1 - beta^t loses digits in float for small t.
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  adam_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<float>(param), dptr<const float>(grad), dptr<float>(exp_avg), dptr<float>(exp_avg_sq),
      amsgrad ? dptr<float>(max_exp_avg_sq) : nullptr, n, lr, beta1, beta2, eps, weight_decay, decoupled,
      static_cast<float>(lr / bc1), static_cast<float>(1.0 / std::sqrt(bc2)));
  check_launch("adam_step n=" + std::to_string(n) + (amsgrad ? " amsgrad" : ""));
}

}  // namespace pyengine
