// Host launchers of the nn kernel families (softmax, cross-entropy, layer norm, attention,
// optimizer updates). Shared by the .cu files that define them and bindings_nn.cpp that
// exposes them, so the compiler checks both sides of every signature. Plain C++ (no CUDA
// headers): bindings_nn.cpp is compiled by the host compiler. Pointers and streams arrive as
// integers (CuPy's .data.ptr and stream.ptr); no launcher allocates device memory; every
// array is contiguous float32 unless said otherwise.
#pragma once
#include <cstdint>
#include <vector>

namespace pyengine {

// Row softmax (log=false) or log_softmax (log=true) over the last dim of a (rows, cols) array.
void softmax_forward(std::uintptr_t x, std::uintptr_t y, long long rows, int cols, bool log,
                     std::uintptr_t stream);
// gx from the forward output y: softmax y*(gy - sum(gy*y)); log_softmax gy - exp(y)*sum(gy).
void softmax_backward(std::uintptr_t gy, std::uintptr_t y, std::uintptr_t gx, long long rows, int cols,
                      bool log, std::uintptr_t stream);

// Per-row cross-entropy of logits (rows, classes) against int64 targets, PyTorch's
// ignore_index and label_smoothing; writes loss (rows,) and the row log-sum-exp (rows,).
void cross_entropy_forward(std::uintptr_t logits, std::uintptr_t target, std::uintptr_t loss,
                           std::uintptr_t lse, long long rows, int classes, long long ignore_index,
                           float label_smoothing, std::uintptr_t stream);
// glogits = gloss[row] * (softmax - smoothed one-hot); rows at ignore_index get zeros.
void cross_entropy_backward(std::uintptr_t gloss, std::uintptr_t logits, std::uintptr_t target,
                            std::uintptr_t lse, std::uintptr_t glogits, long long rows, int classes,
                            long long ignore_index, float label_smoothing, std::uintptr_t stream);

// Layer norm over the last dim of x (rows, d); weight and bias (d,) may be 0 (absent).
void layer_norm_forward(std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias, std::uintptr_t y,
                        std::uintptr_t mean, std::uintptr_t rstd, long long rows, int d, float eps,
                        std::uintptr_t stream);
// gx (rows, d); weight may be 0 (then gx is computed as if it were ones).
void layer_norm_backward_input(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t weight,
                               std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gx, long long rows,
                               int d, std::uintptr_t stream);
// gw, gb (d,) reduced over rows in two stages without atomics; `partial` is caller-owned
// scratch of layer_norm_partial_rows(rows) * 2 * d floats.
int layer_norm_partial_rows(long long rows);
void layer_norm_backward_params(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t mean,
                                std::uintptr_t rstd, std::uintptr_t partial, std::uintptr_t gw,
                                std::uintptr_t gb, long long rows, int d, std::uintptr_t stream);

// Attention over bh = batch*heads independent problems, q (bh, l, e), k (bh, s, e),
// v (bh, s, ev), out (bh, l, ev), lse (bh, l) natural-log row log-sum-exp. The mask, if any,
// is read at mask[b*sb + h*sh + i*sl + j*ss] for problem b*heads + h (strides in elements,
// 0 where broadcast): kind 0 none, 1 bool (true = may attend), 2 additive float32.
struct AttnMask {
  std::uintptr_t ptr;
  int kind, heads;
  long long sb, sh, sl, ss;
};
struct AttnShape {
  int bh, l, s, e, ev;
  float scale;
  bool causal;  // top-left aligned: query i sees keys j <= i, as PyTorch's is_causal
};
void attention_forward(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                       std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream);
// gq, gk, gv from gout; `delta` is caller-owned scratch of bh*l floats.
void attention_backward(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                        std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t gout,
                        std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk, std::uintptr_t gv,
                        std::uintptr_t stream);
// The largest head dim the fused kernels take (E and Ev).
constexpr int kAttnMaxHeadDim = 128;

// In-place optimizer updates over n contiguous floats (PyTorch's formulas; see optim.cu).
// buf may be 0 when momentum == 0.
// Hyperparameters are doubles so that 1 - beta and the bias corrections are exact before the
// single rounding to float.
void sgd_step(std::uintptr_t param, std::uintptr_t grad, std::uintptr_t buf, long long n, double lr,
              double momentum, double dampening, bool nesterov, double weight_decay, bool first_step,
              std::uintptr_t stream);
// max_exp_avg_sq may be 0 unless amsgrad; step is the 1-based count after increment.
void adam_step(std::uintptr_t param, std::uintptr_t grad, std::uintptr_t exp_avg, std::uintptr_t exp_avg_sq,
               std::uintptr_t max_exp_avg_sq, long long n, long long step, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, bool amsgrad,
               std::uintptr_t stream);

}  // namespace pyengine

namespace pyengine {
// One LSTM / GRU time step's pointwise part over n = B*H elements (rnn.cu; formulas there).
// Gate arrays are gate-major: gate k's contiguous (B, H) block starts k*stride floats after the
// pointer. dh_parts holds `parts` (B, H) blocks parts_stride floats apart, summed into dh.
// b_hh (3H) and carry may be 0 (absent). acts may alias xg, dgates fac, dc_prev dc, carry_out carry.
void lstm_cell_forward(std::uintptr_t xg, long long xg_stride, std::uintptr_t hg, long long hg_stride,
                       std::uintptr_t c_prev, std::uintptr_t acts, long long acts_stride, std::uintptr_t c,
                       std::uintptr_t tanh_c, std::uintptr_t h, long long n, std::uintptr_t stream);
// The backward's per-element factors over n elements (any number of steps; see rnn.cu).
void lstm_cell_factors(std::uintptr_t acts, long long acts_stride, std::uintptr_t c_prev, std::uintptr_t tanh_c,
                       std::uintptr_t fac, long long fac_stride, std::uintptr_t dc_dh, long long n,
                       std::uintptr_t stream);
void lstm_cell_backward(std::uintptr_t gh, std::uintptr_t dh_parts, int parts, long long parts_stride,
                        std::uintptr_t dc, std::uintptr_t f, std::uintptr_t fac, long long fac_stride,
                        std::uintptr_t dc_dh, std::uintptr_t dgates, long long dgates_stride,
                        std::uintptr_t dc_prev, long long n, std::uintptr_t stream);
void gru_cell_forward(std::uintptr_t xg, long long xg_stride, std::uintptr_t hg, long long hg_stride,
                      std::uintptr_t b_hh, std::uintptr_t h_prev, std::uintptr_t acts, long long acts_stride,
                      std::uintptr_t hn, std::uintptr_t h, long long n, int hidden, std::uintptr_t stream);
void gru_cell_backward(std::uintptr_t gh, std::uintptr_t dh_parts, int parts, long long parts_stride,
                       std::uintptr_t carry, std::uintptr_t acts, long long acts_stride, std::uintptr_t hn,
                       std::uintptr_t h_prev, std::uintptr_t dxg, long long dxg_stride, std::uintptr_t dhg,
                       long long dhg_stride, std::uintptr_t carry_out, long long n, std::uintptr_t stream);

}  // namespace pyengine

namespace pyengine {
// Side-by-side runs of kernel versions (bench/variants/membound.py). A family with more than
// one version has a default (the faster one measured); set_kernel_version(family, v) makes every
// later launch of that family use version v, and v = 0 restores the default. Families:
// avg_pool2d_backward (2: 4-column gather for any window; 3: 8 columns where windows do not
// overlap) and layer_norm_backward (1: input kernel + two-stage column sums; 2: one fused pass);
// see the .cu headers. An unknown family or version raises std::invalid_argument.
void set_kernel_version(const char* family, int version);
int kernel_version(const char* family);

// Layer norm backward in one pass over the rows: gx, and each block's partial sums of
// gy * xhat and gy written to `partial` (layer_norm_fused_partial_rows(rows, d) rows of 2 * d
// floats), then added up per column into gw, gb. weight may be 0 (gx as if it were ones).
// layer_norm_fused_partial_rows returns 0 where the fused kernel does not take d (or version 1
// of layer_norm_backward is selected): call layer_norm_backward_input/_params then.
int layer_norm_fused_partial_rows(long long rows, int d);
void layer_norm_backward_fused(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t weight,
                               std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gx,
                               std::uintptr_t partial, std::uintptr_t gw, std::uintptr_t gb, long long rows,
                               int d, std::uintptr_t stream);

}  // namespace pyengine

namespace pyengine {
// Multi-tensor ("foreach") optimizer updates: every parameter of a list in one launch per 48
// (no device memory, the pointers travel in the launch). params[t], grads[t] and the state
// lists hold sizes[t] contiguous floats each; bufs may be empty when momentum == 0 and
// max_exp_avg_sqs unless amsgrad. maximize negates every gradient. The formulas and their
// rounding are those of sgd_step / adam_step above.
void sgd_step_multi(const std::vector<std::uintptr_t>& params, const std::vector<std::uintptr_t>& grads,
                    const std::vector<std::uintptr_t>& bufs, const std::vector<long long>& sizes, double lr,
                    double momentum, double dampening, bool nesterov, double weight_decay, bool first_step,
                    bool maximize, std::uintptr_t stream);
void adam_step_multi(const std::vector<std::uintptr_t>& params, const std::vector<std::uintptr_t>& grads,
                     const std::vector<std::uintptr_t>& exp_avgs, const std::vector<std::uintptr_t>& exp_avg_sqs,
                     const std::vector<std::uintptr_t>& max_exp_avg_sqs, const std::vector<long long>& sizes,
                     long long step, double lr, double beta1, double beta2, double eps, double weight_decay,
                     bool decoupled, bool amsgrad, bool maximize, std::uintptr_t stream);

}  // namespace pyengine
