// pybind11 bindings of the ranked kernel versions (kernels_variants.h): each family's
// *_variant_names(), its default version and a launcher taking the production launcher's
// arguments plus `variant`. Used by bench/variants/*.py and tests/test_cuda_variants.py.
#include "bindings_variants.h"

#include "bindings_args.h"
#include "kernels_variants.h"

#include <pybind11/stl.h>

#include <cstdint>

namespace py = pybind11;
using std::uintptr_t;

void bind_variants(py::module_& m) {
  using namespace pyengine;
  using namespace pybind11::literals;

  m.def("kernel_variants_built", [] { return PYENGINE_KERNEL_VARIANTS != 0; },
        "Whether the ranking-only kernel versions were compiled (CMake PYENGINE_KERNEL_VARIANTS=ON); "
        "without them each *_variant launcher takes only its family's default version.");
  m.attr("attention_forward_variant_default") = kAttnFwdDefault;
  m.attr("attention_backward_variant_default") = kAttnBwdDefault;
  m.attr("sgemm_variant_default") = kSgemmDefault;
  m.def("attention_forward_variant_names", &attention_forward_variant_names);
  m.def(
      "attention_forward_variant",
      [](int variant, int bh, int l, int s, int e, int ev, float scale, bool causal, uintptr_t mask,
         int mask_kind, int heads, long long sb, long long sh, long long sl, long long ss, uintptr_t q,
         uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t stream) {
        attention_forward_variant(variant, AttnShape{bh, l, s, e, ev, scale, causal},
                                  AttnMask{mask, mask_kind, heads, sb, sh, sl, ss}, q, k, v, out, lse, stream);
      },
      "variant"_a, "bh"_a, "l"_a, "s"_a, "e"_a, "ev"_a, "scale"_a, "causal"_a, "mask"_a, "mask_kind"_a,
      "heads"_a, "sb"_a, "sh"_a, "sl"_a, "ss"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "stream"_a,
      "attention_forward with kernel version `variant` (attention_forward_variant_names()).");

  m.def("attention_backward_variant_names", &attention_backward_variant_names);
  m.def(
      "attention_backward_variant",
      [](int variant, int bh, int l, int s, int e, int ev, float scale, bool causal, uintptr_t mask,
         int mask_kind, int heads, long long sb, long long sh, long long sl, long long ss, uintptr_t q,
         uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, uintptr_t gout, uintptr_t delta, uintptr_t gq,
         uintptr_t gk, uintptr_t gv, uintptr_t stream) {
        attention_backward_variant(variant, AttnShape{bh, l, s, e, ev, scale, causal},
                                   AttnMask{mask, mask_kind, heads, sb, sh, sl, ss}, q, k, v, out, lse, gout,
                                   delta, gq, gk, gv, stream);
      },
      "variant"_a, "bh"_a, "l"_a, "s"_a, "e"_a, "ev"_a, "scale"_a, "causal"_a, "mask"_a, "mask_kind"_a,
      "heads"_a, "sb"_a, "sh"_a, "sl"_a, "ss"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "gout"_a, "delta"_a,
      "gq"_a, "gk"_a, "gv"_a, "stream"_a,
      "attention_backward with kernel version `variant` (attention_backward_variant_names()).");

  m.def("sgemm_variant_names", &sgemm_variant_names);
  m.def(
      "sgemm_variant",
      [](int variant, int batch, int m_, int n, int k, uintptr_t a, py::tuple a_strides, uintptr_t b,
         py::tuple b_strides, uintptr_t c, uintptr_t stream) {
        const Mat ma = mat_arg(a, a_strides, "a");
        const Mat mb = mat_arg(b, b_strides, "b");
        sgemm_variant(variant, batch, m_, n, k, ma, mb, c, stream);
      },
      "variant"_a, "batch"_a, "m"_a, "n"_a, "k"_a, "a"_a, "a_strides"_a, "b"_a, "b_strides"_a, "c"_a,
      "stream"_a,
      "C[i] = A[i] @ B[i] (float32, FFMA) with kernel version `variant` (sgemm_variant_names()); strides as "
      "matmul's.");
}
