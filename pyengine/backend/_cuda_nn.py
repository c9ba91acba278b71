"""Python wrappers of the native nn kernels (softmax, cross-entropy, layer norm, attention,
optimizer updates), re-exported by cuda_backend."""
