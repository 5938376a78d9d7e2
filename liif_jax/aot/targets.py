"""Compile targets: accelerators this machine may not have, as compile-only devices.

`devices(name)` gives the devices of a named target (`TARGETS`: TPU v4/v5e/v6e slices, H100,
H200), on which jit programs compile without running (`liif_jax.aot.programs`). TPU targets need
libtpu (`pip install "liif_jax[aot-tpu]"`); GPU targets need the CUDA plugin (`[aot-gpu]`) and a
`GpuTargetConfigProto` text file describing the GPU (`gpu_targets/` beside this file). Neither is
imported until a target asks for it. Run with `JAX_PLATFORMS=cpu`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import jax

GPU_TARGETS = pathlib.Path(__file__).resolve().parent / "gpu_targets"

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Target:
    """A compile target and the facts an estimate needs, per device (a chip; a TensorCore on v4)."""

    name: str
    platform: str  # "tpu" or "cuda"
    topology: str  # TPU topology name ("v5e:2x4") or GPU topology ("1x1x1")
    chips_per_host: tuple[int, int, int] | None  # TPU only
    memory_bytes: int  # device memory per chip
    hbm_bandwidth: float  # bytes/s per chip
    peak_flops: dict[str, float]  # per chip, by matmul class: "bf16", "f32" (TF32 on a GPU), "f32_highest"
    description: str
    config_file: str | None = None  # GPU: its GpuTargetConfigProto text, shipped in gpu_targets/

    @property
    def extra(self) -> str:
        return "aot-tpu" if self.platform == "tpu" else "aot-gpu"


def _tpu(
    name: str, topology: str, chips: tuple[int, int, int], hbm_gib: int, bw: float, bf16: float, what: str
) -> Target:
    # f32 matmuls at the default precision run as one bf16 pass on the MXU; "highest" as six.
    peaks = {"bf16": bf16, "f32": bf16, "f32_highest": bf16 / 6}
    return Target(name, "tpu", topology, chips, hbm_gib * GIB, bw, peaks, what)


# Hopper: dense peaks (TF32 is what float32 matmuls use at JAX's default precision on a GPU).
_HOPPER = {"bf16": 989e12, "f32": 494.7e12, "f32_highest": 66.9e12}
TARGETS: dict[str, Target] = {
    "h100": Target(
        "h100", "cuda", "1x1x1", None, 84_978_434_048, 3.35232e12, _HOPPER, "NVIDIA H100 SXM 80GB", "h100_sxm.txtpb"
    ),
    "h200": Target("h200", "cuda", "1x1x1", None, 150_754_820_096, 4.8e12, _HOPPER, "NVIDIA H200 141GB", "h200.txtpb"),
    # GPUs users own, for what compiles there (sm_80, sm_89, sm_75); dense peaks from NVIDIA's sheets.
    "a100": Target(
        "a100",
        "cuda",
        "1x1x1",
        None,
        85_899_345_920,
        2.039e12,
        {"bf16": 312e12, "f32": 156e12, "f32_highest": 19.5e12},
        "NVIDIA A100 SXM 80GB",
        "a100.txtpb",
    ),
    "rtx4090": Target(
        "rtx4090",
        "cuda",
        "1x1x1",
        None,
        25_757_220_864,
        1.008e12,
        {"bf16": 165e12, "f32": 82.6e12, "f32_highest": 82.6e12},
        "NVIDIA GeForce RTX 4090 class (sm_89)",
        "rtx4090_class.txtpb",
    ),
    "t4": Target(
        "t4",
        "cuda",
        "1x1x1",
        None,
        15_835_398_144,
        320e9,
        {"bf16": 65e12, "f32": 8.1e12, "f32_highest": 8.1e12},
        "NVIDIA T4 (Colab's free GPU, sm_75)",
        "t4.txtpb",
    ),
    "v5e-1": _tpu("v5e-1", "v5e:1x1", (1, 1, 1), 16, 819e9, 197e12, "TPU v5e, 1 chip (Colab)"),
    "v5e-8": _tpu("v5e-8", "v5e:2x4", (2, 4, 1), 16, 819e9, 197e12, "TPU v5e, 8 chips (one host)"),
    # libtpu's v4 topology has one device per TensorCore (2 per chip): facts per core.
    "v4-8": _tpu("v4-8", "v4:2x2x1", (2, 2, 1), 16, 614e9, 137.5e12, "TPU v4-8 (4 chips as 8 TensorCores)"),
    "v6e-1": _tpu("v6e-1", "v6e:1x1", (1, 1, 1), 32, 1640e9, 918e12, "TPU v6e, 1 chip"),
}


def target(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


# ---------------------------------------------------------------------------------------------
# Compile-only devices
# ---------------------------------------------------------------------------------------------


def _libtpu_env() -> None:
    """libtpu looks for a TPU VM's metadata and its lock file unless told it is alone on localhost."""
    for key, value in {
        "TPU_SKIP_MDS_QUERY": "1",
        "TPU_WORKER_ID": "0",
        "TPU_WORKER_HOSTNAMES": "localhost",
        "TPU_ACCELERATOR_TYPE": "v5litepod-1",
        "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
    }.items():
        os.environ.setdefault(key, value)


def _missing(t: Target, what: str) -> ImportError:
    return ImportError(
        f'compiling for {t.name} needs {what}: pip install -e ".[{t.extra}]" '
        f"(jax {jax.__version__}'s {'libtpu' if t.platform == 'tpu' else 'CUDA plugin'})"
    )


def cuda_plugin() -> str | None:
    """The installed CUDA plugin that registers the "cuda" platform: cuda13 (what current JAX and the
    lent GPU machines use), else cuda12; None without either."""
    import importlib.util

    if importlib.util.find_spec("jax_plugins") is None:  # no plugin at all (find_spec of a child would raise)
        return None
    for name in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def devices(name: str | Target, gpu_config: str | os.PathLike | None = None) -> list[jax.Device]:
    """Compile-only devices of a target: jit programs whose inputs are sharded over them compile
    for it. `gpu_config`: a GpuTargetConfigProto text file (default: the target's file, which
    liif_jax ships in gpu_targets/)."""
    t = target(name)
    from jax.experimental import topologies

    if t.platform == "tpu":
        import importlib.util

        if importlib.util.find_spec("libtpu") is None:
            raise _missing(t, "libtpu")
        _libtpu_env()
        return _remember(
            t,
            topologies.get_topology_desc(
                topology_name=t.topology, platform="tpu", chips_per_host_bounds=t.chips_per_host
            ).devices,
        )
    if not cuda_plugin():
        raise _missing(t, "the CUDA plugin")
    path = pathlib.Path(gpu_config) if gpu_config is not None else GPU_TARGETS / t.config_file
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: GPU target description (GpuTargetConfigProto text) not found; "
            f"pass gpu_config= (liif_jax ships {t.config_file} in liif_jax/aot/gpu_targets/)"
        )
    return _remember(
        t,
        topologies.get_topology_desc(
            topology_name="", platform="cuda", target_config=path.read_text(), topology=t.topology
        ).devices,
    )


_CHIP_MEMORY: dict[str, int] = {}  # device kind -> memory per chip, of the targets `devices` made


def _remember(t: Target, devs) -> list[jax.Device]:
    _CHIP_MEMORY[devs[0].device_kind] = t.memory_bytes
    return list(devs)


def chip_memory(device: jax.Device) -> int:
    """Memory of a compile-only device made by `devices` (its target's), for choosing a render's tile."""
    if device.device_kind not in _CHIP_MEMORY:
        raise ValueError(f"{device.device_kind}: not a device of liif_jax.aot.devices; give memory_bytes")
    return _CHIP_MEMORY[device.device_kind]
