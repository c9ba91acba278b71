// Host launchers of the core kernel families (matmul, conv2d, pooling, activations).
// Shared by the .cu files that define them and bindings.cpp that exposes them, so the
// compiler checks both sides of every signature. Pointers and streams arrive as integers
// (CuPy's .data.ptr and stream.ptr); no launcher allocates device memory.
#pragma once
#include <cstdint>

namespace pyengine {

// Activation codes, shared by the activation kernels and the GEMM epilogue.
enum Act : int {
  ACT_NONE = 0, ACT_RELU, ACT_LEAKY_RELU, ACT_GELU, ACT_GELU_TANH, ACT_SIGMOID, ACT_TANH, ACT_SELU
};

// A strided float32 matrix operand: element (b, r, c) lives at ptr[b*bs + r*rs + c*cs].
// One of rs, cs must be 1 (row- or column-major); bs may be 0 to broadcast over the batch.
struct Mat {
  std::uintptr_t ptr;
  long long bs, rs, cs;
};

// C[b] = act(A[b] @ B[b] + bias) for A (m, k), B (k, n); C contiguous, batch stride m*n.
// bias (n,) may be 0. tf32 selects the tensor-core kernel (sm_80+).
void matmul(int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c, std::uintptr_t bias,
            int act, float act_param, bool tf32, std::uintptr_t stream);

// NCHW convolution geometry; weights are (oc, c/groups, kh, kw), as PyTorch.
struct ConvShape {
  int n, c, h, w, oc, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
};
void conv2d_forward(const ConvShape& s, std::uintptr_t x, std::uintptr_t w, std::uintptr_t bias,
                    std::uintptr_t y, std::uintptr_t stream);
void conv2d_backward_data(const ConvShape& s, std::uintptr_t gy, std::uintptr_t w, std::uintptr_t gx,
                          std::uintptr_t stream);
void conv2d_backward_weight(const ConvShape& s, std::uintptr_t gy, std::uintptr_t x, std::uintptr_t gw,
                            std::uintptr_t stream);

// Pooling over (n*c) planes of h x w into oh x ow.
struct PoolShape {
  int nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};
// Max: indices are int64 flat positions in the h*w plane, as PyTorch's return_indices.
void max_pool2d_forward(const PoolShape& s, std::uintptr_t x, std::uintptr_t y, std::uintptr_t idx,
                        std::uintptr_t stream);
// gx is zeroed here, then every gy element is added at its index (windows may overlap).
void max_pool2d_backward(const PoolShape& s, std::uintptr_t gy, std::uintptr_t idx, std::uintptr_t gx,
                         std::uintptr_t stream);
// Average (no dilation, as PyTorch); divisor_override <= 0 means none.
void avg_pool2d_forward(const PoolShape& s, bool count_include_pad, int divisor_override,
                        std::uintptr_t x, std::uintptr_t y, std::uintptr_t stream);
void avg_pool2d_backward(const PoolShape& s, bool count_include_pad, int divisor_override,
                         std::uintptr_t gy, std::uintptr_t gx, std::uintptr_t stream);

// Elementwise activations over n contiguous floats; param is leaky_relu's slope.
void activation_forward(int act, float param, std::uintptr_t x, std::uintptr_t y, long long n,
                        std::uintptr_t stream);
// gx = gy * act'(x); x and y are the forward input and output (each kernel reads the one it needs).
void activation_backward(int act, float param, std::uintptr_t gy, std::uintptr_t x, std::uintptr_t y,
                         std::uintptr_t gx, long long n, std::uintptr_t stream);

}  // namespace pyengine

// The TF32 GEMM's versions side by side (matmul_tf32.cu), for bench/variants/tf32.py and the
// tests: the names ("auto" is what matmul(tf32=true) runs), and one GEMM by a named version.
#include <string>
#include <vector>

namespace pyengine {
std::vector<std::string> matmul_tf32_variants();
void matmul_tf32_variant(const std::string& variant, int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c,
                         std::uintptr_t bias, int act, float act_param, std::uintptr_t stream);
}  // namespace pyengine
