"""Optimizer updates in place, one thread per element (grid-stride), the arithmetic of
torch.optim's single-tensor SGD and Adam/AdamW. Host-side scalars (bias corrections) are
computed once per step by the caller."""
import math

from numba import cuda, float32

from . import kernel


@kernel("void(float32[:], float32[:], float32[:], int32, float32, float32, float32, int32, "
        "float32, int32)")
def sgd(param, grad, buf, has_buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    i = cuda.grid(1)
    while i < param.size:
        g = grad[i] + weight_decay * param[i]
        if has_buf:
            b = g if first_step else momentum * buf[i] + (float32(1) - dampening) * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] -= lr * g
        i += cuda.gridsize(1)


@kernel("void(float32[:], float32[:], float32[:], float32[:], float32[:], int32, float32, float32, "
        "float32, float32, float32, float32, float32, int32)")
def adam(param, grad, exp_avg, exp_avg_sq, max_sq, amsgrad, lr, beta1, beta2, eps, weight_decay,
         bias_correction1, bias_correction2_sqrt, decoupled):
    i = cuda.grid(1)
    while i < param.size:
        p = param[i]
        g = grad[i]
        if decoupled:
            p *= float32(1) - lr * weight_decay
        else:
            g += weight_decay * p
        m = exp_avg[i] + (float32(1) - beta1) * (g - exp_avg[i])
        v = beta2 * exp_avg_sq[i] + (float32(1) - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_sq[i], v)
            max_sq[i] = v
        param[i] = p - (lr / bias_correction1) * m / (math.sqrt(v) / bias_correction2_sqrt + eps)
        i += cuda.gridsize(1)
