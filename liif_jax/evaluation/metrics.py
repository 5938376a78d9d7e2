"""PSNR under the evaluation protocols of the official LIIF `utils.calc_psnr`.

The paper's numbers depend on two details that are easy to get wrong: how many border pixels are
shaved (`div2k`: scale + 6, `benchmark`: scale) and, for `benchmark`, measuring on the Y channel
with the coefficients [65.738, 129.057, 25.064] / 256 (the difference is converted, not the images,
and there is no +16 offset because it cancels). Everything here is plain numpy on HWC arrays in
[0, 1]; the official code works on NCHW tensors in float32, we accumulate in float64, which agrees
with it to well under 1e-3 dB.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np

Protocol = Literal["div2k", "benchmark", "plain"]

Y_COEFFS = np.array([65.738, 129.057, 25.064]) / 256


def eval_type_to_protocol(eval_type: str | None) -> tuple[Protocol, int]:
    """Parse the official `eval_type` config value ('div2k-4', 'benchmark-2', or None).

    None means no shaving and all channels, as the official `test.py` then calls `calc_psnr` with
    its defaults; the scale is then irrelevant and returned as 1.
    """
    if eval_type is None:
        return "plain", 1
    name, sep, scale = eval_type.partition("-")
    if name not in ("div2k", "benchmark") or not sep or not scale.isdigit() or int(scale) < 1:
        raise ValueError(
            f"eval_type {eval_type!r} is not 'div2k-<scale>', 'benchmark-<scale>' or None "
            "(the forms the official test.py understands)"
        )
    return cast(Protocol, name), int(scale)


def shave_for(protocol: Protocol, scale: int) -> int:
    """Border pixels the protocol ignores on every side."""
    if protocol == "plain":
        return 0
    if protocol not in ("div2k", "benchmark"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'div2k', 'benchmark' or 'plain'")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"protocol {protocol!r} needs a positive integer scale, got {scale!r}")
    return int(scale) + 6 if protocol == "div2k" else int(scale)


def psnr(sr: np.ndarray, hr: np.ndarray, protocol: Protocol = "plain", scale: int = 1) -> float:
    """PSNR in dB of `sr` against `hr`, both HWC (or NHWC) in [0, 1], as the official computes it.

    With a leading batch axis the squared error is averaged over all images and pixels before the
    log, exactly as `calc_psnr` does on a batch (the official evaluation uses batch size 1, so
    average per-image PSNRs yourself for a dataset mean). Inputs are not clamped: clamp the
    prediction to [0, 1] first, as the official `test.py` does.

    Shaving crops rows and columns [s, n - s). The official slices [s:-s], which is the same for
    every s >= 1 and would be empty for s = 0; s = 0 only arises for 'plain', where nothing is
    cropped, and `shave_for` rejects scales that would give it under a real protocol.
    Identical images give +inf, as the official log10(0) does.
    """
    sr = np.asarray(sr, dtype=np.float64)
    hr = np.asarray(hr, dtype=np.float64)
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {sr.shape} vs {hr.shape}")
    if sr.ndim not in (3, 4):
        raise ValueError(f"expected HWC or NHWC arrays, got shape {sr.shape}")
    shave = shave_for(protocol, scale)
    height, width = sr.shape[-3:-1]
    if min(height, width) <= 2 * shave:
        raise ValueError(
            f"image of shape {sr.shape} is too small for protocol {protocol!r} at scale {scale}: "
            f"shaving {shave} pixels per side needs height and width above {2 * shave}"
        )
    diff = (sr - hr)[..., shave : height - shave, shave : width - shave, :]
    if protocol == "benchmark" and diff.shape[-1] > 1:
        if diff.shape[-1] != 3:
            raise ValueError(f"'benchmark' measures on Y and needs 3 channels, got shape {sr.shape}")
        diff = diff @ Y_COEFFS
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else -10 * float(np.log10(mse))
