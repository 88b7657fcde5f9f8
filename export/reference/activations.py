"""The ONNX element-wise activations, each as the spec defines it, computed in the
input's own dtype (float32 stays float32, as in onnxruntime)."""

from __future__ import annotations

import numpy as np


def relu(X):
    return np.maximum(X, 0).astype(X.dtype, copy=False)


def tanh(X):
    return np.tanh(X)


def sigmoid(X):
    """Y = 1 / (1 + exp(-X)), written with exp(-|X|) so that no exp overflows."""
    e = np.exp(-np.abs(X))
    return np.where(X >= 0, 1 / (1 + e), e / (1 + e)).astype(X.dtype, copy=False)


def _scalar_bound(name: str, bound, X) -> np.ndarray | None:
    if bound is None:
        return None
    if bound.size != 1 or bound.ndim > 1:
        raise ValueError(f"Clip: {name} shape {bound.shape} is not a scalar (input shape {X.shape})")
    if bound.dtype != X.dtype:
        raise ValueError(f"Clip: {name} dtype {bound.dtype} is not the input's {X.dtype}")
    return bound.reshape(())


def clip(input, min=None, max=None):
    """Clip-11/13: Y = min(max(input, min), max); min and max are optional scalar inputs
    (absent: no bound on that side). When min > max every element becomes max, as the spec
    says, which is exactly this order of the two steps. ReLU6 is Clip(X, 0, 6)."""
    low, high = _scalar_bound("min", min, input), _scalar_bound("max", max, input)
    out = input if low is None else np.maximum(input, low)
    out = out if high is None else np.minimum(out, high)
    return out.astype(input.dtype, copy=True)


def leaky_relu(X, *, alpha: float = 0.01):
    """Y = X where X >= 0, else alpha * X."""
    return np.where(X >= 0, X, X.dtype.type(alpha) * X).astype(X.dtype, copy=False)


def _hard_gate(X, alpha: float, beta: float):
    """max(0, min(1, alpha * X + beta)), in X's dtype."""
    t = X.dtype.type
    return np.clip(t(alpha) * X + t(beta), t(0), t(1))


def hard_sigmoid(X, *, alpha: float = 0.2, beta: float = 0.5):
    """Y = max(0, min(1, alpha * X + beta))."""
    return _hard_gate(X, alpha, beta).astype(X.dtype, copy=False)


def hard_swish(X):
    """Y = X * HardSigmoid(X) with the spec's fixed alpha = 1/6, beta = 0.5."""
    return (X * _hard_gate(X, 1 / 6, 0.5)).astype(X.dtype, copy=False)
