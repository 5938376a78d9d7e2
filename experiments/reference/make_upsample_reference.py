"""Reference vectors for the paper's fixed-scale baselines from the official PyTorch code
(tests/upsample_baseline_test.py).

    python experiments/reference/make_upsample_reference.py --official PATH/TO/liif \
        [--out tests/data/upsample_reference.npz] [--seed 0]

Runs under PyTorch, not in the project's venv: made with torch 2.13.0 (CPU, float32) and the
official code at yinboc/liif commit cb4c0e8457c2ee7ddf0a1b034f53a91e016a4086, imported from the
checkout given by `--official` (nothing of it is copied here). Its `utils.py` imports
tensorboardX, which is never used here; a stand-in is put in place if it is not installed.

The models are the official `liif` model without `imnet_spec` (`train_edsr-baseline-x2.yaml`,
`train_rdn-x2.yaml`, the CelebA-HQ `_upsample` configs): the encoder with its upsampling tail, then
`grid_sample(mode='nearest')` at the query coordinates. Narrow encoders at every tail scale: EDSR
baseline (2 res-blocks, 8 features) x2, x3, x4, x8, and RDN (G0 8, config A) x2, x3, x4.

RDN's dense blocks hold millions of weights even when narrow, so no weights are stored: every
parameter (besides EDSR's unused mean shifts) is overwritten with `param_values` below, which the
test recomputes from the stored names and shapes. The npz holds, for each model `<m>`:
* `<m>/spec` the official model spec and `<m>/params` the [name, shape] list, in order (JSON);
* `<m>/inp` (2, 3, 5, 6) NCHW in [-1, 1]; `<m>/pred` the encoder output (the upsampled map);
* `<m>/coord`, `<m>/cell` (2, Q, 2) and `<m>/out` = `model(inp, coord, cell)` (2, Q, 3): pixel
  centres of the map's own grid, of a grid 1.5 times larger (the nearest-neighbour resampling an
  evaluation at another scale does) and uniform random coordinates;
* `meta`: versions, seed and model names as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import types

import numpy as np

COMMIT = "cb4c0e8457c2ee7ddf0a1b034f53a91e016a4086"
IN_HW = (5, 6)
BATCH = 2
N_RANDOM = 40  # random coordinates per batch element
UNUSED = ("encoder.sub_mean.", "encoder.add_mean.")


def _spec(encoder: str, args: dict) -> dict:
    return {"name": "liif", "args": {"encoder_spec": {"name": encoder, "args": args}}}


MODELS = {
    **{f"edsr_x{s}": _spec("edsr-baseline", {"n_resblocks": 2, "n_feats": 8, "scale": s}) for s in (2, 3, 4, 8)},
    **{f"rdn_x{s}": _spec("rdn", {"G0": 8, "RDNconfig": "A", "scale": s}) for s in (2, 3, 4)},
}


def param_values(params: list[tuple[str, list[int]]], seed: int) -> dict[str, np.ndarray]:
    """Deterministic weights for a state dict's [name, shape] list: U(+-1/sqrt(fan_in)) float32 in
    list order, fan_in of the layer's weight (PyTorch's default init bounds). Shared with the test."""
    rng = np.random.default_rng(seed)
    shapes = dict((n, s) for n, s in params)
    out = {}
    for name, shape in params:
        weight = shapes[name.rsplit(".", 1)[0] + ".weight"]
        bound = 1 / np.sqrt(np.prod(weight[1:]))
        out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def import_official(path: pathlib.Path):
    """The official `models` package and `utils.make_coord`."""
    if not (path / "models" / "misc.py").is_file():
        raise SystemExit(f"{path} is not a checkout of yinboc/liif (no models/misc.py)")
    try:
        import tensorboardX  # noqa: F401  (official utils.py imports it at the top)
    except ImportError:
        sys.modules["tensorboardX"] = types.SimpleNamespace(SummaryWriter=None)
    sys.path.insert(0, str(path))
    import models
    import utils

    return models, utils.make_coord


def queries(rng: np.random.Generator, make_coord, hw: tuple[int, int]) -> np.ndarray:
    """(Q, 2): every pixel centre of the map, of a grid 1.5x larger, and random coordinates."""
    big = (round(hw[0] * 1.5), round(hw[1] * 1.5))
    rand = rng.uniform(-1, 1, size=(N_RANDOM, 2))
    return np.concatenate([make_coord(hw).numpy(), make_coord(big).numpy(), rand]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=pathlib.Path, required=True, help="checkout of yinboc/liif")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/data/upsample_reference.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    models, make_coord = import_official(args.official.resolve())
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for i, (key, spec) in enumerate(MODELS.items()):
        model = models.make(spec).eval()
        assert model.imnet is None
        sd = model.state_dict()
        params = [[k, list(v.shape)] for k, v in sd.items() if not k.startswith(UNUSED)]
        values = param_values(params, args.seed + i)
        model.load_state_dict({**sd, **{k: torch.from_numpy(v) for k, v in values.items()}})
        inp = torch.from_numpy(rng.uniform(-1, 1, size=(BATCH, 3, *IN_HW)).astype(np.float32))
        with torch.no_grad():
            pred = model.gen_feat(inp)
            coord = np.stack([queries(rng, make_coord, tuple(pred.shape[-2:])) for _ in range(BATCH)])
            cell = np.broadcast_to(np.float32(2) / np.array(pred.shape[-2:], np.float32), coord.shape).copy()
            out = model(inp, torch.from_numpy(coord), torch.from_numpy(cell))
        arrays.update(
            {
                f"{key}/spec": np.array(json.dumps(spec)),
                f"{key}/params": np.array(json.dumps(params)),
                f"{key}/seed": np.array(args.seed + i),
                f"{key}/inp": inp.numpy(),
                f"{key}/pred": pred.numpy(),
                f"{key}/coord": coord,
                f"{key}/cell": cell,
                f"{key}/out": out.numpy(),
            }
        )
    meta = {"torch": torch.__version__, "official_commit": COMMIT, "seed": args.seed, "models": list(MODELS)}
    arrays["meta"] = np.array(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB): {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
