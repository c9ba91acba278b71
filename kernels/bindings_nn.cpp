#include "bindings_nn.h"

void bind_nn(pybind11::module_& m) { (void)m; }
