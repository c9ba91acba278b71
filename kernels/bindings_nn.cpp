// pybind11 bindings of the nn kernel families, added to pyengine._C by bindings.cpp.
// Every function takes device pointers and the stream as integers and allocates nothing; the
// Python wrappers in pyengine/backend/_cuda_nn.py check shapes and dtypes and own the memory.
#include "bindings_nn.h"

#include "kernels_nn.h"

#include <pybind11/stl.h>

#include <cstdint>

namespace py = pybind11;
using std::uintptr_t;

void bind_nn(py::module_& m) {
  using namespace pyengine;
  using namespace pybind11::literals;

  m.def("softmax_forward", &softmax_forward, "x"_a, "y"_a, "rows"_a, "cols"_a, "log"_a, "stream"_a,
        "Row softmax / log_softmax over the last dim of a contiguous (rows, cols) float32 array.");
  m.def("softmax_backward", &softmax_backward, "gy"_a, "y"_a, "gx"_a, "rows"_a, "cols"_a, "log"_a,
        "stream"_a, "Gradient of the row softmax / log_softmax from its output y.");
  m.def("cross_entropy_forward", &cross_entropy_forward, "logits"_a, "target"_a, "loss"_a, "lse"_a,
        "rows"_a, "classes"_a, "ignore_index"_a, "label_smoothing"_a, "stream"_a,
        "Per-row cross-entropy (int64 targets) and the row log-sum-exp.");
  m.def("cross_entropy_backward", &cross_entropy_backward, "gloss"_a, "logits"_a, "target"_a, "lse"_a,
        "glogits"_a, "rows"_a, "classes"_a, "ignore_index"_a, "label_smoothing"_a, "stream"_a,
        "Gradient of the per-row cross-entropy with respect to the logits.");

  m.def("layer_norm_forward", &layer_norm_forward, "x"_a, "weight"_a, "bias"_a, "y"_a, "mean"_a,
        "rstd"_a, "rows"_a, "d"_a, "eps"_a, "stream"_a,
        "Layer norm over the last dim; weight and bias may be 0 (absent).");
  m.def("layer_norm_backward_input", &layer_norm_backward_input, "gy"_a, "x"_a, "weight"_a, "mean"_a,
        "rstd"_a, "gx"_a, "rows"_a, "d"_a, "stream"_a, "Layer norm input gradient.");
  m.def("layer_norm_partial_rows", &layer_norm_partial_rows, "rows"_a,
        "Rows of the (rows, 2, d) float32 scratch layer_norm_backward_params needs.");
  m.def("layer_norm_backward_params", &layer_norm_backward_params, "gy"_a, "x"_a, "mean"_a, "rstd"_a,
        "partial"_a, "gw"_a, "gb"_a, "rows"_a, "d"_a, "stream"_a,
        "Layer norm weight and bias gradients, a two-stage column reduction.");

  m.attr("attention_max_head_dim") = kAttnMaxHeadDim;
  m.def(
      "attention_forward",
      [](int bh, int l, int s, int e, int ev, float scale, bool causal, uintptr_t mask, int mask_kind,
         int heads, long long sb, long long sh, long long sl, long long ss, uintptr_t q, uintptr_t k,
         uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t stream) {
        attention_forward(AttnShape{bh, l, s, e, ev, scale, causal},
                          AttnMask{mask, mask_kind, heads, sb, sh, sl, ss}, q, k, v, out, lse, stream);
      },
      "bh"_a, "l"_a, "s"_a, "e"_a, "ev"_a, "scale"_a, "causal"_a, "mask"_a, "mask_kind"_a, "heads"_a,
      "sb"_a, "sh"_a, "sl"_a, "ss"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "stream"_a,
      "Flash-attention forward; mask_kind 0 none, 1 bool, 2 additive, read through element strides.");
  m.def(
      "attention_backward",
      [](int bh, int l, int s, int e, int ev, float scale, bool causal, uintptr_t mask, int mask_kind,
         int heads, long long sb, long long sh, long long sl, long long ss, uintptr_t q, uintptr_t k,
         uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t gout, uintptr_t delta, uintptr_t gq,
         uintptr_t gk, uintptr_t gv, uintptr_t stream) {
        attention_backward(AttnShape{bh, l, s, e, ev, scale, causal},
                           AttnMask{mask, mask_kind, heads, sb, sh, sl, ss}, q, k, v, out, lse, gout, delta,
                           gq, gk, gv, stream);
      },
      "bh"_a, "l"_a, "s"_a, "e"_a, "ev"_a, "scale"_a, "causal"_a, "mask"_a, "mask_kind"_a, "heads"_a,
      "sb"_a, "sh"_a, "sl"_a, "ss"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "gout"_a, "delta"_a, "gq"_a,
      "gk"_a, "gv"_a, "stream"_a, "Flash-attention backward from the saved lse; delta is bh*l scratch.");

  m.def("sgd_step", &sgd_step, "param"_a, "grad"_a, "buf"_a, "n"_a, "lr"_a, "momentum"_a, "dampening"_a,
        "nesterov"_a, "weight_decay"_a, "first_step"_a, "stream"_a,
        "Fused in-place SGD (momentum, dampening, nesterov, weight decay) update.");
  m.def("adam_step", &adam_step, "param"_a, "grad"_a, "exp_avg"_a, "exp_avg_sq"_a, "max_exp_avg_sq"_a,
        "n"_a, "step"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "weight_decay"_a, "decoupled"_a,
        "amsgrad"_a, "stream"_a, "Fused in-place Adam / AdamW (amsgrad) update.");

  m.def("lstm_cell_forward", &lstm_cell_forward, "xg"_a, "xg_stride"_a, "hg"_a, "hg_stride"_a, "c_prev"_a,
        "acts"_a, "acts_stride"_a, "c"_a, "tanh_c"_a, "h"_a, "n"_a, "stream"_a,
        "One LSTM step's gates, cell and hidden state from gate-major pre-activation blocks.");
  m.def("lstm_cell_factors", &lstm_cell_factors, "acts"_a, "acts_stride"_a, "c_prev"_a, "tanh_c"_a, "fac"_a,
        "fac_stride"_a, "dc_dh"_a, "n"_a, "stream"_a,
        "The LSTM backward's per-element gate factors and dc/dh, for any number of steps at once.");
  m.def("lstm_cell_backward", &lstm_cell_backward, "gh"_a, "dh_parts"_a, "parts"_a, "parts_stride"_a, "dc"_a,
        "f"_a, "fac"_a, "fac_stride"_a, "dc_dh"_a, "dgates"_a, "dgates_stride"_a, "dc_prev"_a, "n"_a, "stream"_a,
        "One LSTM step's pre-activation gradients (its factors scaled) and dc_prev.");
  m.def("gru_cell_forward", &gru_cell_forward, "xg"_a, "xg_stride"_a, "hg"_a, "hg_stride"_a, "b_hh"_a,
        "h_prev"_a, "acts"_a, "acts_stride"_a, "hn"_a, "h"_a, "n"_a, "hidden"_a, "stream"_a,
        "One GRU step's gates and hidden state; b_hh may be 0.");
  m.def("gru_cell_backward", &gru_cell_backward, "gh"_a, "dh_parts"_a, "parts"_a, "parts_stride"_a, "carry"_a,
        "acts"_a, "acts_stride"_a, "hn"_a, "h_prev"_a, "dxg"_a, "dxg_stride"_a, "dhg"_a, "dhg_stride"_a,
        "carry_out"_a, "n"_a, "stream"_a, "One GRU step's pre-activation gradients; carry may be 0.");

  m.def("set_kernel_version", &set_kernel_version, "family"_a, "version"_a,
        "Use kernel version `version` (1, 2; 0 = the default) for every later launch of a memory-bound "
        "family, for side-by-side timing (bench/variants/membound.py).");
  m.def("kernel_version", &kernel_version, "family"_a, "The kernel version a family launches now.");
  m.def("layer_norm_fused_partial_rows", &layer_norm_fused_partial_rows, "rows"_a, "d"_a,
        "Rows of the (rows, 2, d) float32 scratch layer_norm_backward_fused needs; 0 where it does not "
        "take d (use layer_norm_backward_input / _params).");
  m.def("layer_norm_backward_fused", &layer_norm_backward_fused, "gy"_a, "x"_a, "weight"_a, "mean"_a,
        "rstd"_a, "gx"_a, "partial"_a, "gw"_a, "gb"_a, "rows"_a, "d"_a, "stream"_a,
        "Layer norm gx, gw and gb in one pass over gy and x (plus a small column sum of the partials).");

  m.def("sgd_step_multi", &sgd_step_multi, "params"_a, "grads"_a, "bufs"_a, "sizes"_a, "lr"_a, "momentum"_a,
        "dampening"_a, "nesterov"_a, "weight_decay"_a, "first_step"_a, "maximize"_a, "stream"_a,
        "Fused in-place SGD over lists of parameters: one launch per 48 (pointers passed in the launch).");
  m.def("adam_step_multi", &adam_step_multi, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a,
        "max_exp_avg_sqs"_a, "sizes"_a, "step"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "weight_decay"_a,
        "decoupled"_a, "amsgrad"_a, "maximize"_a, "stream"_a,
        "Fused in-place Adam / AdamW over lists of parameters: one launch per 48.");
}
