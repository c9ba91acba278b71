// rnn.cu — the pointwise part of one LSTM or GRU time step, forward and backward, in PyTorch's
// gate order (LSTM i, f, g, o; GRU r, z, n):
//   LSTM: a = sigmoid/tanh(xg + hg);  c = f*c_prev + i*g;  h = o*tanh(c)
//         factors (all steps at once): fac = (g*i(1-i), c_prev*f(1-f), i(1-g^2), tanh(c)*o(1-o)),
//               dc_dh = o*(1 - tanh(c)^2)
//         back: dh = gh + sum(dh_parts);  dc_t = dc + dh*dc_dh;
//               d(i, f, g, o) = (fac_i*dc_t, fac_f*dc_t, fac_g*dc_t, fac_o*dh);  dc_prev = dc_t*f
//   GRU:  r, z = sigmoid(xg + hg + b_hh);  hn = hg_n + b_n;  n = tanh(xg_n + r*hn);
//         h = n + z*(h_prev - n)
//         back: dh = gh + sum(dh_parts) + carry;  dn = dh(1-z)(1-n^2);  dz = dh(h_prev-n)z(1-z);
//               dr = dn*hn*r(1-r);  dxg = (dr, dz, dn);  dhg = (dr, dz, dn*r);  carry_out = dh*z
// The recurrences (pyengine/nn/modules/rnn.py) run one matmul batched over the gates and one of
// these per step; the CPU reference is numpy_backend.lstm_cell & co.
//
// Layout: gate arrays are gate-major, gate k's contiguous (B, H) block k*stride floats after the
// pointer (a step's slice of a (G, T, B, H) buffer); states are contiguous (B, H). dh_parts are the
// P per-gate products of the backward matmul, summed here so no step needs a separate reduction.
// Outputs may alias the input beside them (acts = xg, dgates = fac, dc_prev = dc, carry_out = carry): each
// thread reads all of its element's inputs before it writes, so no pointer is __restrict__.
//
// Technique: v1 one grid-stride pass, one thread per (b, j) element handling every gate: one
// launch per step in each direction instead of the ten or more elementwise launches (and their
// temporaries) of the step written with array operations. Memory-bound and tiny (B*H elements
// per step); its cost is the launch.
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27 22:10 UTC device check,
// bench/variants/rnn.py, CUDA events around whole training steps; the kernels themselves not
// timed alone): v1 CharRNN step (embed -> LSTM 128 -> linear, T 64, SGD) 18.7 ms at batch 8
// (46 ms before the fused cells) and 19.6 ms at batch 32 (input 32), GRU 19.8 / 19.8 ms,
// against 11.0 / 23.8 ms on the NumPy CPU backend of that host; step time flat in the batch:
// host-bound (Python and launch overhead of ~4 calls per time step), not kernel-bound.
#include "common.cuh"
#include "kernels_nn.h"

#include <string>

namespace pyengine {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

#define GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__global__ void lstm_forward_kernel(const float* xg, long long xs, const float* hg, long long hs,
                                    const float* c_prev, float* acts, long long as, float* c, float* tanh_c,
                                    float* h, long long n) {
  GRID_STRIDE(e, n) {
    const float ig = sigmoid(xg[e] + hg[e]);
    const float fg = sigmoid(xg[xs + e] + hg[hs + e]);
    const float gg = tanhf(xg[2 * xs + e] + hg[2 * hs + e]);
    const float og = sigmoid(xg[3 * xs + e] + hg[3 * hs + e]);
    const float ct = fg * c_prev[e] + ig * gg;
    const float tc = tanhf(ct);
    acts[e] = ig;
    acts[as + e] = fg;
    acts[2 * as + e] = gg;
    acts[3 * as + e] = og;
    c[e] = ct;
    tanh_c[e] = tc;
    h[e] = og * tc;
  }
}

// The backward's factors depend on the forward pass only, so they are computed for every step
// at once (one launch over T*B*H elements) and each step's kernel only scales them.
__global__ void lstm_factors_kernel(const float* acts, long long as, const float* c_prev, const float* tanh_c,
                                    float* fac, long long fs, float* dc_dh, long long n) {
  GRID_STRIDE(e, n) {
    const float ig = acts[e], fg = acts[as + e], gg = acts[2 * as + e], og = acts[3 * as + e];
    const float tc = tanh_c[e];
    fac[e] = gg * ig * (1.f - ig);
    fac[fs + e] = c_prev[e] * fg * (1.f - fg);
    fac[2 * fs + e] = ig * (1.f - gg * gg);
    fac[3 * fs + e] = tc * og * (1.f - og);
    dc_dh[e] = og * (1.f - tc * tc);
  }
}

__global__ void lstm_backward_kernel(const float* gh, const float* parts, int np, long long ps, const float* dc,
                                     const float* f, const float* fac, long long fs, const float* dc_dh,
                                     float* dg, long long ds, float* dc_prev, long long n) {
  GRID_STRIDE(e, n) {
    float dh = gh[e];
    for (int p = 0; p < np; ++p) dh += parts[p * ps + e];
    const float dct = dc[e] + dh * dc_dh[e];
    const float fo = fac[3 * fs + e];
    dg[e] = fac[e] * dct;
    dg[ds + e] = fac[fs + e] * dct;
    dg[2 * ds + e] = fac[2 * fs + e] * dct;
    dg[3 * ds + e] = fo * dh;
    dc_prev[e] = dct * f[e];
  }
}

__global__ void gru_forward_kernel(const float* xg, long long xs, const float* hg, long long hs,
                                   const float* b_hh, const float* h_prev, float* acts, long long as, float* hn,
                                   float* h, long long n, int hidden) {
  GRID_STRIDE(e, n) {
    const int j = static_cast<int>(e % hidden);
    const float br = b_hh ? b_hh[j] : 0.f, bz = b_hh ? b_hh[hidden + j] : 0.f;
    const float bn = b_hh ? b_hh[2 * hidden + j] : 0.f;
    const float r = sigmoid(xg[e] + hg[e] + br);
    const float z = sigmoid(xg[xs + e] + hg[hs + e] + bz);
    const float hnv = hg[2 * hs + e] + bn;
    const float nv = tanhf(xg[2 * xs + e] + r * hnv);
    const float hp = h_prev[e];
    acts[e] = r;
    acts[as + e] = z;
    acts[2 * as + e] = nv;
    hn[e] = hnv;
    h[e] = nv + z * (hp - nv);
  }
}

__global__ void gru_backward_kernel(const float* gh, const float* parts, int np, long long ps, const float* carry,
                                    const float* acts, long long as, const float* hn, const float* h_prev,
                                    float* dxg, long long dxs, float* dhg, long long dhs, float* carry_out,
                                    long long n) {
  GRID_STRIDE(e, n) {
    float dh = gh[e] + (carry ? carry[e] : 0.f);
    for (int p = 0; p < np; ++p) dh += parts[p * ps + e];
    const float r = acts[e], z = acts[as + e], nv = acts[2 * as + e];
    const float dn = dh * (1.f - z) * (1.f - nv * nv);
    const float dz = dh * (h_prev[e] - nv) * z * (1.f - z);
    const float dr = dn * hn[e] * r * (1.f - r);
    dxg[e] = dr;
    dxg[dxs + e] = dz;
    dxg[2 * dxs + e] = dn;
    dhg[e] = dr;
    dhg[dhs + e] = dz;
    dhg[2 * dhs + e] = dn * r;
    carry_out[e] = dh * z;
  }
}

#undef GRID_STRIDE

std::string cell_desc(const char* op, long long n, int np) {
  return std::string(op) + " n=" + std::to_string(n) + (np >= 0 ? " parts=" + std::to_string(np) : "");
}

}  // namespace

void lstm_cell_forward(std::uintptr_t xg, long long xg_stride, std::uintptr_t hg, long long hg_stride,
                       std::uintptr_t c_prev, std::uintptr_t acts, long long acts_stride, std::uintptr_t c,
                       std::uintptr_t tanh_c, std::uintptr_t h, long long n, std::uintptr_t stream) {
  if (n <= 0) return;
  lstm_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<const float>(xg), xg_stride, dptr<const float>(hg), hg_stride, dptr<const float>(c_prev),
      dptr<float>(acts), acts_stride, dptr<float>(c), dptr<float>(tanh_c), dptr<float>(h), n);
  check_launch(cell_desc("lstm_cell_forward", n, -1));
}

void lstm_cell_factors(std::uintptr_t acts, long long acts_stride, std::uintptr_t c_prev, std::uintptr_t tanh_c,
                       std::uintptr_t fac, long long fac_stride, std::uintptr_t dc_dh, long long n,
                       std::uintptr_t stream) {
  if (n <= 0) return;
  lstm_factors_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<const float>(acts), acts_stride, dptr<const float>(c_prev), dptr<const float>(tanh_c),
      dptr<float>(fac), fac_stride, dptr<float>(dc_dh), n);
  check_launch(cell_desc("lstm_cell_factors", n, -1));
}

void lstm_cell_backward(std::uintptr_t gh, std::uintptr_t dh_parts, int parts, long long parts_stride,
                        std::uintptr_t dc, std::uintptr_t f, std::uintptr_t fac, long long fac_stride,
                        std::uintptr_t dc_dh, std::uintptr_t dgates, long long dgates_stride,
                        std::uintptr_t dc_prev, long long n, std::uintptr_t stream) {
  if (n <= 0) return;
  lstm_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<const float>(gh), dptr<const float>(dh_parts), parts, parts_stride, dptr<const float>(dc),
      dptr<const float>(f), dptr<const float>(fac), fac_stride, dptr<const float>(dc_dh), dptr<float>(dgates),
      dgates_stride, dptr<float>(dc_prev), n);
  check_launch(cell_desc("lstm_cell_backward", n, parts));
}

void gru_cell_forward(std::uintptr_t xg, long long xg_stride, std::uintptr_t hg, long long hg_stride,
                      std::uintptr_t b_hh, std::uintptr_t h_prev, std::uintptr_t acts, long long acts_stride,
                      std::uintptr_t hn, std::uintptr_t h, long long n, int hidden, std::uintptr_t stream) {
  if (n <= 0) return;
  gru_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<const float>(xg), xg_stride, dptr<const float>(hg), hg_stride, dptr<const float>(b_hh),
      dptr<const float>(h_prev), dptr<float>(acts), acts_stride, dptr<float>(hn), dptr<float>(h), n, hidden);
  check_launch(cell_desc("gru_cell_forward", n, -1) + " hidden=" + std::to_string(hidden));
}

void gru_cell_backward(std::uintptr_t gh, std::uintptr_t dh_parts, int parts, long long parts_stride,
                       std::uintptr_t carry, std::uintptr_t acts, long long acts_stride, std::uintptr_t hn,
                       std::uintptr_t h_prev, std::uintptr_t dxg, long long dxg_stride, std::uintptr_t dhg,
                       long long dhg_stride, std::uintptr_t carry_out, long long n, std::uintptr_t stream) {
  if (n <= 0) return;
  gru_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(
      dptr<const float>(gh), dptr<const float>(dh_parts), parts, parts_stride, dptr<const float>(carry),
      dptr<const float>(acts), acts_stride, dptr<const float>(hn), dptr<const float>(h_prev), dptr<float>(dxg),
      dxg_stride, dptr<float>(dhg), dhg_stride, dptr<float>(carry_out), n);
  check_launch(cell_desc("gru_cell_backward", n, parts));
}

}  // namespace pyengine
