"""The training state and its optimizer: the official Adam and MultiStepLR, kept lean for the step.

Adam runs over all parameters as one flat vector (`optax.flatten`): one fused update per step
instead of a few kernels per parameter array, the same arithmetic element by element.

With a bfloat16 model the state also carries the params rounded to bfloat16 (`compute_params`),
made by the step that updates the float32 params: the forward pass reads bf16 weights as program
inputs instead of casting them every step, and XLA then adds each bias inside its matmul (a cast
bias costs a pass of its own over the activations).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from liif_jax.models import Model


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any  # float32: what the optimizer updates and checkpoints keep
    opt_state: Any
    compute_params: Any = None  # the params in the model's compute dtype (`compute_copy`); None in float32

    @classmethod
    def create(cls, model: Model, tx: optax.GradientTransformation, params, opt_state=None, step=0) -> TrainState:
        """A state at `step` (a new optimizer state unless `opt_state` is given)."""
        opt_state = tx.init(params) if opt_state is None else opt_state
        return cls(jnp.asarray(step, jnp.int32), params, opt_state, compute_copy(model, params))


def compute_copy(model: Model, params):
    """`params` in the model's compute dtype, or None when it computes in float32."""
    if model.dtype is None:
        return None
    return jax.tree.map(lambda p: p.astype(model.dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def lr_schedule(lr: float, milestones_epochs: list[int], gamma: float, steps_per_epoch: int) -> optax.Schedule:
    """The official MultiStepLR, stepped per epoch, expressed in optimizer steps."""
    boundaries = {int(m) * steps_per_epoch: gamma for m in milestones_epochs}
    return optax.piecewise_constant_schedule(lr, boundaries)


def config_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    opt = config.optimizer
    return lr_schedule(opt.lr, list(opt.milestones), opt.gamma, steps_per_epoch)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """The official Adam over all parameters as one flat vector (`optax.flatten`)."""
    if config.optimizer.name != "adam":
        raise ValueError(
            f"optimizer.name: only 'adam' (the official choice) is supported, got {config.optimizer.name!r}"
        )
    # torch.optim.Adam defaults: betas (0.9, 0.999), eps 1e-8 outside the square root.
    return optax.flatten(optax.adam(config_schedule(config, steps_per_epoch), b1=0.9, b2=0.999, eps=1e-8))
