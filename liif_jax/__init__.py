"""liif_jax: LIIF (Local Implicit Image Function) in JAX/Flax.

    import liif_jax
    model = liif_jax.load("pretrained:edsr-baseline-liif")  # or a workdir, a checkpoint, an official .pth
    big = model.upscale(photo, scale=3.5)

`load`, `Upscaler`, `Latents` and `train` live in `liif_jax.api`, imported on first use so that
`import liif_jax` (and every `python -m liif_jax.*` command) stays cheap.
"""

import sys

if sys.version_info < (3, 12):  # noqa: UP036  (first: one line, not a SyntaxError deep in an import)
    raise SystemExit(
        f"liif_jax needs Python 3.12 or newer; this is Python {sys.version_info[0]}.{sys.version_info[1]} "
        f"({sys.executable}). Get one with pyenv, uv (uv venv -p 3.12) or your OS packages."
    )

__version__ = "0.1.0"
__all__ = ["Latents", "Upscaler", "__version__", "load", "train"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (milliseconds, for every CLI)
if TYPE_CHECKING:  # for type checkers and editors
    from liif_jax.api import Latents, Upscaler, load, train


def __getattr__(name: str):
    """`liif_jax.load` and the rest of `liif_jax.api`, imported on first use (PEP 562)."""
    if name in ("Latents", "Upscaler", "load", "train"):
        from liif_jax import api

        return getattr(api, name)
    raise AttributeError(f"module 'liif_jax' has no attribute {name!r}")
