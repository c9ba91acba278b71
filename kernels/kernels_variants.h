// Host launchers of the kernel versions that bench/variants/*.py rank side by side on a GPU
// (attention forward and backward, SGEMM). Variant 0 of each family is the v2 kernel
// (attention_fwd.cu, attention_bwd.cu, matmul.cu); the others are the candidates, named by
// *_variant_names(); the k*Default constants say which one the production launchers run.
// Plain C++: bindings_variants.cpp is compiled by the host compiler.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels_core.h"
#include "kernels_nn.h"

namespace pyengine {

// The versions attention_forward and attention_backward launch (0: v2, the kernels of
// attention_fwd.cu and attention_bwd.cu), chosen from bench/variants/attention.py's ranking.
constexpr int kAttnFwdDefault = 0;
constexpr int kAttnBwdDefault = 0;

std::vector<std::string> attention_forward_variant_names();
// As attention_forward; `variant` indexes attention_forward_variant_names().
void attention_forward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                               std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                               std::uintptr_t stream);
// Version 0 (attention_fwd.cu's v2 kernel), whatever the default.
void attention_forward_v2(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                          std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream);

std::vector<std::string> attention_backward_variant_names();
// As attention_backward; `variant` indexes attention_backward_variant_names().
void attention_backward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                                std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                                std::uintptr_t gout, std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk,
                                std::uintptr_t gv, std::uintptr_t stream);
// Version 0 (attention_bwd.cu's v2 kernels), whatever the default.
void attention_backward_v2(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                           std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t gout,
                           std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk, std::uintptr_t gv,
                           std::uintptr_t stream);

// The version matmul() runs for large float32 problems with row-major A (0: its own kernel).
constexpr int kSgemmDefault = 0;

std::vector<std::string> sgemm_variant_names();
// C[b] = A[b] @ B[b] in float32 (no bias, no activation, never TF32), as matmul's operands.
void sgemm_variant(int variant, int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c,
                   std::uintptr_t stream);
// matmul()'s route to the measured-best candidate: launches it and returns true for a large
// float32 problem with row-major A (bias and act as matmul's), else returns false.
bool sgemm_default_variant(int batch, int m, int n, int k, const Mat& a, const Mat& b, std::uintptr_t c,
                           std::uintptr_t bias, int act, float act_param, std::uintptr_t stream);

}  // namespace pyengine
