// Scalar activation functions and derivatives, shared by the elementwise kernels
// (activation.cu) and the fused GEMM epilogue (matmul.cu), so both compute the same values.
#pragma once
#include "kernels_core.h"

namespace pyengine {

constexpr float kSeluAlpha = 1.6732632423543772f;
constexpr float kSeluScale = 1.0507009873554805f;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kGeluCubic = 0.044715f;

__device__ __forceinline__ float act_forward(int act, float x, float param) {
  switch (act) {
    case ACT_RELU: return x > 0.f ? x : 0.f;
    case ACT_LEAKY_RELU: return x > 0.f ? x : x * param;
    // erfc, not 1 + erf: for x << 0 the sum cancels and loses every digit of the tail.
    case ACT_GELU: return 0.5f * x * erfcf(-x * kInvSqrt2);
    // 0.5 (1 + tanh u) = sigmoid(2u): the same value without 1 + tanh's cancellation at x << 0.
    case ACT_GELU_TANH: return x / (1.f + expf(-2.f * kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    case ACT_SIGMOID: return 1.f / (1.f + expf(-x));
    case ACT_TANH: return tanhf(x);
    case ACT_SELU: return x > 0.f ? kSeluScale * x : kSeluScale * kSeluAlpha * expm1f(x);
    default: return x;
  }
}

// Derivative times gy. Sigmoid and tanh use the output y; the others the input x
// (relu's and leaky_relu's gradient at exactly 0 is 0 / slope, as PyTorch's).
__device__ __forceinline__ float act_backward(int act, float gy, float x, float y, float param) {
  switch (act) {
    case ACT_RELU: return x > 0.f ? gy : 0.f;
    case ACT_LEAKY_RELU: return x > 0.f ? gy : gy * param;
    case ACT_GELU: {
      const float cdf = 0.5f * erfcf(-x * kInvSqrt2);
      const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
      return gy * (cdf + x * pdf);
    }
    case ACT_GELU_TANH: {
      // With s = sigmoid(2u): 0.5 (1 + tanh u) = s and 0.5 (1 - tanh^2 u) = 2 s (1 - s).
      const float s = 1.f / (1.f + expf(-2.f * kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
      const float du = kSqrt2OverPi * (1.f + 3.f * kGeluCubic * x * x);
      return gy * (s + 2.f * x * s * (1.f - s) * du);
    }
    case ACT_SIGMOID: return gy * y * (1.f - y);
    case ACT_TANH: return gy * (1.f - y * y);
    case ACT_SELU: return x > 0.f ? gy * kSeluScale : gy * kSeluScale * kSeluAlpha * expf(x);
    default: return gy;
  }
}

}  // namespace pyengine
