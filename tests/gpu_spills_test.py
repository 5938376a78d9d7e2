"""The fused query kernel compiles for sm_80, sm_89 and sm_90a without register spills (ptxas -v, read
deviceless), for LIIF's MLP (256 x 4) in TF32 and bf16. Needs the `aot-gpu` extra; skipped without it."""

import os
import re
import subprocess
import sys

import pytest

from liif_jax import aot

from conftest import REPO

try:
    PLUGIN = aot.targets.cuda_plugin()
except ModuleNotFoundError:  # no jax_plugins package at all
    PLUGIN = None
if PLUGIN is None:
    pytest.skip("needs the aot-gpu extra (the CUDA plugin)", allow_module_level=True)

COMPILE = """
import sys, jax, jax.numpy as jnp
from liif_jax import aot
from liif_jax.kernels import fused_query
dev = aot.devices(sys.argv[1])[0]
S = lambda *s, d=jnp.float32: jax.ShapeDtypeStruct(s, d, sharding=jax.sharding.SingleDeviceSharding(dev))
w = (256,) * 4
layers = [(S(a, b), S(b)) for a, b in zip(w, w[1:])] + [(S(256, 3), S(3))]
args = (S(4096, 256), S(4, 4096, d=jnp.int32), S(4, 4, 4096), S(4, 4096), S(4, 256), S(256), layers)
dtype = jnp.bfloat16 if sys.argv[2] == "bf16" else None
with aot.programs.lowering([dev], "tensorfloat32"):
    jax.jit(lambda *a: fused_query.ensemble_mlp(*a, compute_dtype=dtype)).lower(*args).compile()
"""


def ptxas_report(target: str, dtype: str) -> str:
    """ptxas's -v lines for the kernel, from XLA's log of its ptxas calls."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "0",
        "TF_CPP_VMODULE": "subprocess_compilation=3",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, target, dtype], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"entry function 'ensemble_mlp'.*?Used \d+ registers", proc.stderr, re.S)
    assert found, proc.stderr[-3000:]
    return found.group(0)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("target", ["a100", "rtx4090", "h100"])
def test_the_kernel_spills_no_registers(target, dtype):
    report = ptxas_report(target, dtype)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]
    assert spills and not any(spills), report
