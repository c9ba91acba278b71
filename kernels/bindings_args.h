// Argument helpers shared by the pybind11 binding files (bindings.cpp, bindings_variants.cpp).
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels_core.h"

// A matrix operand from its device pointer and (batch, row, column) strides in elements.
inline pyengine::Mat mat_arg(std::uintptr_t ptr, const pybind11::tuple& strides, const char* name) {
  if (strides.size() != 3)
    throw std::invalid_argument(std::string(name) + "_strides must be (batch, row, col), got " +
                                std::to_string(strides.size()) + " values");
  return {ptr, strides[0].cast<long long>(), strides[1].cast<long long>(), strides[2].cast<long long>()};
}
