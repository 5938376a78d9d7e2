"""Flax linen layers that start from PyTorch's default initialisation.

LIIF's published results come from PyTorch's default init (kaiming-uniform with a=sqrt(5) for
weights, U(+-1/sqrt(fan_in)) for biases). Training from scratch here should start from the same
distribution, so every Conv/Dense in the package is built by these factories.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)) == variance_scaling(1/3, fan_in, uniform).
_torch_kernel_init = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _torch_bias_init(fan_in: int):
    bound = 1 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv(features: int, kernel: int, in_features: int, name: str, dtype: Dtype = None) -> nn.Conv:
    """PyTorch `Conv2d(in, out, k, padding=k // 2)` on NHWC inputs."""
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        padding=((pad, pad), (pad, pad)),
        kernel_init=_torch_kernel_init,
        bias_init=_torch_bias_init(in_features * kernel * kernel),
        dtype=dtype,
        name=name,
    )


def dense(features: int, in_features: int, name: str, dtype: Dtype = None, use_bias: bool = True) -> nn.Dense:
    """PyTorch `Linear(in, out, bias=use_bias)`."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=_torch_kernel_init,
        bias_init=_torch_bias_init(in_features),
        dtype=dtype,
        name=name,
    )
