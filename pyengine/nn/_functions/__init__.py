"""Autograd Functions of the NN ops, one small module per family.

Each Function receives backend arrays, calls the backend's function table
(``ctx.backend.conv2d`` ...) and uses ``ctx.backend.xp`` only for glue arithmetic, so the same
class runs on every device. Argument checking lives in ``pyengine.nn.functional``; these
classes assume valid, normalised arguments (ints already turned into 2-tuples).
"""
