// The process-wide kernel version of each memory-bound family (kernels_nn.h), so that one run
// can time the previous and the reworked kernels side by side through the same entry points.
#include "kernels_nn.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace pyengine {
namespace {

struct Family {
  const char* name;
  int default_version, min_version, max_version, selected;  // selected 0: the default
};

// Defaults: the faster version measured on the H100 (see each .cu header).
Family families[] = {
    {"avg_pool2d_backward", 3, 2, 3, 0},
    {"layer_norm_backward", 2, 1, 2, 0},
};

Family& find(const char* name) {
  for (Family& f : families)
    if (std::strcmp(f.name, name) == 0) return f;
  std::string known;
  for (const Family& f : families) known += std::string(known.empty() ? "" : ", ") + f.name;
  throw std::invalid_argument(std::string("kernel version: unknown family '") + name + "' (known: " + known + ")");
}

}  // namespace

void set_kernel_version(const char* family, int version) {
  Family& f = find(family);
  if (version != 0 && (version < f.min_version || version > f.max_version))
    throw std::invalid_argument(std::string("kernel version: ") + family + " has versions " +
                                std::to_string(f.min_version) + ".." + std::to_string(f.max_version) +
                                " (0 = default), got " + std::to_string(version));
  f.selected = version;
}

int kernel_version(const char* family) {
  const Family& f = find(family);
  return f.selected ? f.selected : f.default_version;
}

}  // namespace pyengine
