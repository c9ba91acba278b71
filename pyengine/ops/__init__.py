"""The core tensor ops as autograd Functions, one module per family.

Each Function works on backend arrays and asks ``ctx.backend`` for the array module, so the
same class runs on every device. Tensor methods in ``pyengine/tensor.py`` call these.
"""
