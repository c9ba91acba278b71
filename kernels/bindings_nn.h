// Bindings of the nn kernel families (softmax, cross-entropy, layer norm, attention,
// optimizer updates), defined in bindings_nn.cpp and called from bindings.cpp.
#pragma once
#include <pybind11/pybind11.h>

void bind_nn(pybind11::module_& m);
