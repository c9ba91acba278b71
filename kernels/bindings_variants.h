// Bindings of the kernel versions bench/variants/*.py rank (kernels_variants.h), defined in
// bindings_variants.cpp and called from bindings.cpp.
#pragma once
#include <pybind11/pybind11.h>

void bind_variants(pybind11::module_& m);
