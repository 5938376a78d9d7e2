"""Reference vectors for the MetaSR baseline from the official PyTorch code (tests/metasr_reference_test.py).

    python experiments/reference/make_metasr_reference.py --official PATH/TO/liif \
        [--out tests/data/metasr_reference.npz] [--seed 0]

Runs under PyTorch, not in the project's venv: made with torch 2.13.0 (CPU, float32) and the
official code at yinboc/liif commit cb4c0e8457c2ee7ddf0a1b034f53a91e016a4086, imported from the
checkout given by `--official` (nothing of it is copied here). The official `query_rgb` calls
`.cuda()` on its latent coordinates; without a GPU that call is made a no-op, so everything runs on
the CPU. Its `utils.py` imports tensorboardX, which MetaSR never uses; a stand-in is put in place
if it is not installed.

The model is the official `configs/train-div2k/train_edsr-baseline-metasr.yaml` model (MetaSR with
an EDSR-baseline encoder, no upsampling, and MetaSR's fixed imnet: MLP 3 -> [256] -> C*9*3) with a
narrow encoder (2 res-blocks, 8 features) so that the file stays small (~0.25 MB; the imnet's last
layer alone has 256 * C*9*3 weights). Random weights from `torch.manual_seed(seed)`.

The npz holds:
* `param/<official name>`: the state dict (OIHW conv and (out, in) linear weights, float32), as an
  official checkpoint's `model.sd` holds it (with EDSR's unused `sub_mean`/`add_mean`);
* `inp` (2, 3, 12, 14) NCHW in [-1, 1]; `feat` the encoder output (2, 8, 12, 14);
* `coord`, `cell` (2, Q, 2) and `out` = `model(inp, coord, cell)` (2, Q, 3); `scale` (Q, 2) the
  (row, col) scale each query's grid was made for. Queries are pixel centres of output grids at
  integer, non-integer and unequal row/column scales: every grid's four corners, a sample of its
  other border pixels and a sample of interior pixels (a different sample per batch element);
* `model_spec`: the official model spec as a JSON string; `meta`: versions and seed as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import types

import numpy as np

COMMIT = "cb4c0e8457c2ee7ddf0a1b034f53a91e016a4086"
IN_HW = (12, 14)
BATCH = 2
# (row scale, col scale): 1 and 2 put the query cells' corners exactly on latent cell edges (the
# nearest-neighbour tie case), the others are non-integer, unequal, or beyond the training range.
SCALES = [(1.0, 1.0), (2.0, 2.0), (2.5, 2.5), (3.3, 3.3), (3.1, 1.6), (6.0, 6.0)]
N_BORDER, N_INTERIOR = 28, 28  # per grid and batch element, besides the 4 corners

MODEL_SPEC = {
    "name": "metasr",
    "args": {
        "encoder_spec": {
            "name": "edsr-baseline",
            "args": {"n_resblocks": 2, "n_feats": 8, "no_upsampling": True},
        }
    },
}


def import_official(path: pathlib.Path):
    """The official `models` package and `utils.make_coord`, runnable on a CPU-only machine."""
    import torch

    if not (path / "models" / "misc.py").is_file():
        raise SystemExit(f"{path} is not a checkout of yinboc/liif (no models/misc.py)")
    try:
        import tensorboardX  # noqa: F401  (official utils.py imports it at the top)
    except ImportError:
        sys.modules["tensorboardX"] = types.SimpleNamespace(SummaryWriter=None)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self  # official query_rgb calls .cuda()
    sys.path.insert(0, str(path))
    import models
    import utils

    return models, utils.make_coord


def grid_queries(rng: np.random.Generator, make_coord, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of an (H, W) grid: its 4 corners, some border and some interior pixels."""
    H, W = hw
    coord = make_coord((H, W), flatten=False).numpy()
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    on_border = (rows == 0) | (rows == H - 1) | (cols == 0) | (cols == W - 1)
    corners = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]
    border = [(r, c) for r, c in zip(rows[on_border], cols[on_border]) if (r, c) not in corners]
    interior = list(zip(rows[~on_border], cols[~on_border]))
    pick = lambda xs, n: [xs[i] for i in rng.choice(len(xs), size=min(n, len(xs)), replace=False)]
    idx = corners + pick(border, N_BORDER) + pick(interior, N_INTERIOR)
    c = np.stack([coord[r, k] for r, k in idx]).astype(np.float32)
    cell = np.tile(np.array([2 / H, 2 / W], np.float32), (len(idx), 1))
    return c, cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=pathlib.Path, required=True, help="checkout of yinboc/liif")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/data/metasr_reference.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    models, make_coord = import_official(args.official.resolve())
    torch.manual_seed(args.seed)
    model = models.make(MODEL_SPEC).eval()
    inp = torch.rand(BATCH, 3, *IN_HW) * 2 - 1

    rng = np.random.default_rng(args.seed)
    coords, cells, scales = [[] for _ in range(BATCH)], [[] for _ in range(BATCH)], []
    for sh, sw in SCALES:
        hw = (round(IN_HW[0] * sh), round(IN_HW[1] * sw))
        for b in range(BATCH):
            c, cl = grid_queries(rng, make_coord, hw)
            coords[b].append(c)
            cells[b].append(cl)
        scales.append(np.tile(np.array([sh, sw], np.float32), (len(c), 1)))
    coord = np.stack([np.concatenate(c) for c in coords])
    cell = np.stack([np.concatenate(c) for c in cells])

    with torch.no_grad():
        feat = model.gen_feat(inp)
        out = model(inp, torch.from_numpy(coord), torch.from_numpy(cell))

    meta = {"torch": torch.__version__, "official_commit": COMMIT, "seed": args.seed, "in_hw": list(IN_HW)}
    arrays = {f"param/{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    arrays.update(
        inp=inp.numpy(),
        feat=feat.numpy(),
        coord=coord,
        cell=cell,
        out=out.numpy(),
        scale=np.concatenate(scales),
        model_spec=np.array(json.dumps(MODEL_SPEC)),
        meta=np.array(json.dumps(meta)),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB): {coord.shape[1]} queries x {BATCH}, {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
