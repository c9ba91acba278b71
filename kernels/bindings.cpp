// pybind11 module pyengine._C: the core kernel families (matmul, conv2d, pooling,
// activations), the nn families through bind_nn (bindings_nn.cpp), and a driver probe.
// Every kernel entry takes raw device pointers (uintptr_t), sizes and a stream handle and
// never allocates; CuPy owns the memory (pyengine/backend/cuda_backend.py).
// Importing this module never touches the driver: cudart is linked statically and the
// first CUDA call happens only when a function below is called.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>

#include "bindings_args.h"
#include "bindings_nn.h"
#include "bindings_variants.h"
#include "common.cuh"
#include "kernels_core.h"

namespace py = pybind11;
using pyengine::ConvShape;
using pyengine::Mat;
using pyengine::PoolShape;
using std::uintptr_t;

namespace {

// cudaGetDeviceCount's status: (count, error name, error text); (0, name, text) on failure,
// so a machine without a driver or a GPU gets a reason instead of an abort.
std::tuple<int, std::string, std::string> probe() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return {0, cudaGetErrorName(err), cudaGetErrorString(err)};
  }
  return {count, "", ""};
}

ConvShape conv_shape(py::tuple x, py::tuple w, py::tuple y, py::tuple stride, py::tuple padding,
                     py::tuple dilation, int groups) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4)
    throw py::value_error("conv2d: shapes must be 4-D (N, C, H, W) / (O, C/groups, kH, kW)");
  return ConvShape{x[0].cast<int>(), x[1].cast<int>(), x[2].cast<int>(), x[3].cast<int>(),
                   w[0].cast<int>(), w[2].cast<int>(), w[3].cast<int>(), y[2].cast<int>(),
                   y[3].cast<int>(), stride[0].cast<int>(), stride[1].cast<int>(), padding[0].cast<int>(),
                   padding[1].cast<int>(), dilation[0].cast<int>(), dilation[1].cast<int>(), groups};
}

PoolShape pool_shape(py::tuple x, py::tuple y, py::tuple kernel, py::tuple stride, py::tuple padding,
                     py::tuple dilation) {
  if (x.size() != 4 || y.size() != 4) throw py::value_error("pool2d: shapes must be 4-D (N, C, H, W)");
  return PoolShape{x[0].cast<int>() * x[1].cast<int>(), x[2].cast<int>(), x[3].cast<int>(), y[2].cast<int>(),
                   y[3].cast<int>(), kernel[0].cast<int>(), kernel[1].cast<int>(), stride[0].cast<int>(),
                   stride[1].cast<int>(), padding[0].cast<int>(), padding[1].cast<int>(),
                   dilation[0].cast<int>(), dilation[1].cast<int>()};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyengine's hand-written CUDA kernels (raw device pointers in, nothing allocated)";
  m.attr("cuda_built") = true;

  m.def("device_count", [] { return std::get<0>(probe()); },
        "Number of CUDA devices; 0 (never an abort) when there is no driver or no device.");
  m.def("runtime_error_string", [] {
        auto [count, name, text] = probe();
        return name.empty() ? std::string() : name + ": " + text;
      },
      "Why device_count() is 0 ('cudaErrorNoDevice: ...', 'cudaErrorInsufficientDriver: ...'), or ''.");
  m.def("device_name", [](int i) {
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
        return std::string(prop.name);
      },
      py::arg("index") = 0);
  m.def("synchronize", [] {
    py::gil_scoped_release release;
    CUDA_CHECK(cudaDeviceSynchronize());
  });

  py::enum_<pyengine::Act>(m, "Act")
      .value("none", pyengine::ACT_NONE)
      .value("relu", pyengine::ACT_RELU)
      .value("leaky_relu", pyengine::ACT_LEAKY_RELU)
      .value("gelu", pyengine::ACT_GELU)
      .value("gelu_tanh", pyengine::ACT_GELU_TANH)
      .value("sigmoid", pyengine::ACT_SIGMOID)
      .value("tanh", pyengine::ACT_TANH)
      .value("selu", pyengine::ACT_SELU);

  m.def("matmul",
        [](int batch, int m_, int n, int k, uintptr_t a, py::tuple a_strides, uintptr_t b, py::tuple b_strides,
           uintptr_t c, uintptr_t bias, int act, float act_param, bool tf32, uintptr_t stream) {
          const Mat ma = mat_arg(a, a_strides, "a");
          const Mat mb = mat_arg(b, b_strides, "b");
          pyengine::matmul(batch, m_, n, k, ma, mb, c, bias, act, act_param, tf32, stream);
        },
        "C[i] = act(A[i] @ B[i] + bias), float32. Strides (batch, row, col) are in elements, one of row/col "
        "must be 1, batch may be 0. C is contiguous (batch, m, n). bias=0 for none.",
        py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("a"), py::arg("a_strides"),
        py::arg("b"), py::arg("b_strides"), py::arg("c"), py::arg("bias"), py::arg("act"),
        py::arg("act_param"), py::arg("tf32"), py::arg("stream"));

  m.def("conv2d_forward",
        [](py::tuple xs, py::tuple ws, py::tuple ys, py::tuple stride, py::tuple padding, py::tuple dilation,
           int groups, uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y, uintptr_t stream) {
          pyengine::conv2d_forward(conv_shape(xs, ws, ys, stride, padding, dilation, groups), x, w, bias, y,
                                   stream);
        },
        "y = conv2d(x, w) + bias over contiguous NCHW float32 arrays; bias=0 for none.");
  m.def("conv2d_backward_data",
        [](py::tuple xs, py::tuple ws, py::tuple ys, py::tuple stride, py::tuple padding, py::tuple dilation,
           int groups, uintptr_t gy, uintptr_t w, uintptr_t gx, uintptr_t stream) {
          pyengine::conv2d_backward_data(conv_shape(xs, ws, ys, stride, padding, dilation, groups), gy, w, gx,
                                         stream);
        },
        "gx (shape xs) from gy (shape ys) and w; every element of gx is written.");
  m.def("conv2d_backward_weight",
        [](py::tuple xs, py::tuple ws, py::tuple ys, py::tuple stride, py::tuple padding, py::tuple dilation,
           int groups, uintptr_t gy, uintptr_t x, uintptr_t gw, uintptr_t stream) {
          pyengine::conv2d_backward_weight(conv_shape(xs, ws, ys, stride, padding, dilation, groups), gy, x,
                                           gw, stream);
        },
        "gw (shape ws) from gy and x; gw is overwritten (zeroed first when split-K accumulates).");

  m.def("max_pool2d_forward",
        [](py::tuple xs, py::tuple ys, py::tuple kernel, py::tuple stride, py::tuple padding, py::tuple dilation,
           uintptr_t x, uintptr_t y, uintptr_t idx, uintptr_t stream) {
          pyengine::max_pool2d_forward(pool_shape(xs, ys, kernel, stride, padding, dilation), x, y, idx, stream);
        },
        "y and int64 indices (flat in each H*W plane) of max pooling over contiguous NCHW float32.");
  m.def("max_pool2d_backward",
        [](py::tuple xs, py::tuple ys, uintptr_t gy, uintptr_t idx, uintptr_t gx, uintptr_t stream) {
          const py::tuple one = py::make_tuple(1, 1), zero = py::make_tuple(0, 0);
          pyengine::max_pool2d_backward(pool_shape(xs, ys, one, one, zero, one), gy, idx, gx, stream);
        },
        "gx (zeroed, then gy added at each index) of shape xs.");
  m.def("avg_pool2d_forward",
        [](py::tuple xs, py::tuple ys, py::tuple kernel, py::tuple stride, py::tuple padding,
           bool count_include_pad, int divisor_override, uintptr_t x, uintptr_t y, uintptr_t stream) {
          const py::tuple one = py::make_tuple(1, 1);
          pyengine::avg_pool2d_forward(pool_shape(xs, ys, kernel, stride, padding, one), count_include_pad,
                                       divisor_override, x, y, stream);
        },
        "Average pooling; divisor_override <= 0 means none.");
  m.def("avg_pool2d_backward",
        [](py::tuple xs, py::tuple ys, py::tuple kernel, py::tuple stride, py::tuple padding,
           bool count_include_pad, int divisor_override, uintptr_t gy, uintptr_t gx, uintptr_t stream) {
          const py::tuple one = py::make_tuple(1, 1);
          pyengine::avg_pool2d_backward(pool_shape(xs, ys, kernel, stride, padding, one), count_include_pad,
                                        divisor_override, gy, gx, stream);
        },
        "gx of average pooling; every element written.");

  m.def("activation_forward", &pyengine::activation_forward, py::arg("act"), py::arg("param"), py::arg("x"),
        py::arg("y"), py::arg("n"), py::arg("stream"), "y = act(x) over n contiguous float32.");
  m.def("activation_backward", &pyengine::activation_backward, py::arg("act"), py::arg("param"), py::arg("gy"),
        py::arg("x"), py::arg("y"), py::arg("gx"), py::arg("n"), py::arg("stream"),
        "gx = gy * act'(x) (sigmoid and tanh read the output y, the others the input x).");

  bind_nn(m);
  bind_variants(m);

  m.def("matmul_tf32_variants", &pyengine::matmul_tf32_variants,
        "Names of the TF32 GEMM versions matmul_tf32_variant runs ('auto' is what matmul(tf32=True) runs).");
  m.def("matmul_tf32_variant",
        [](const std::string& variant, int batch, int m_, int n, int k, uintptr_t a, py::tuple a_strides, uintptr_t b,
           py::tuple b_strides, uintptr_t c, uintptr_t bias, int act, float act_param, uintptr_t stream) {
          const Mat ma = mat_arg(a, a_strides, "a");
          const Mat mb = mat_arg(b, b_strides, "b");
          pyengine::matmul_tf32_variant(variant, batch, m_, n, k, ma, mb, c, bias, act, act_param, stream);
        },
        "matmul(..., tf32=True) by a named version of the TF32 kernel (see matmul_tf32_variants()), for "
        "side-by-side benchmarks and tests; same arguments as matmul without tf32.",
        py::arg("variant"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("a"),
        py::arg("a_strides"), py::arg("b"), py::arg("b_strides"), py::arg("c"), py::arg("bias"), py::arg("act"),
        py::arg("act_param"), py::arg("stream"));
}
