"""Checks `python -m liif_jax.convert MODEL OUT.pth` against real PyTorch and the official code.

Two steps, in two environments (liif_jax has no torch; the official code needs it):

    python experiments/reference/check_pth_export.py export DIR       # liif_jax venv
    python experiments/reference/check_pth_export.py check DIR --official PATH/TO/liif   # torch venv

`export` builds small models of every encoder family with random weights (LIIF with EDSR-baseline,
RDN without cell decoding, RCAN; MetaSR), saves each as a liif_jax checkpoint, exports it with the
convert CLI, and stores our outputs on one random input. `check` loads every `.pth` with
`torch.load` (its default `weights_only=True`, with and without `mmap=True`) and the official
`models.make(sv['model'], load_sd=True)` (a strict `load_state_dict`), runs the official forward
and prints the largest difference from ours; it fails above 1e-5. The official `query_rgb` calls
`.cuda()`, made a no-op on a machine without a GPU; `utils.py` imports tensorboardX, stubbed if
missing. Nothing of the official code is copied here: `--official` names a checkout of yinboc/liif.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import types

import numpy as np

H, W = 27, 31  # output grid: 2.7 x 2.4 of the 10 x 13 input


def _encoder(name: str, **args) -> dict:
    return {"name": name, "args": {**args, "no_upsampling": True}}


def _mlp(*hidden: int) -> dict:
    return {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}}


SPECS = {
    "liif_edsr": {
        "name": "liif",
        "args": {"encoder_spec": _encoder("edsr-baseline", n_resblocks=2, n_feats=8), "imnet_spec": _mlp(32, 32)},
    },
    "liif_rdn_nocell": {
        "name": "liif",
        "args": {"encoder_spec": _encoder("rdn", G0=8, RDNconfig="A"), "imnet_spec": _mlp(16), "cell_decode": False},
    },
    "liif_rcan": {
        "name": "liif",
        "args": {
            "encoder_spec": _encoder("rcan", n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4),
            "imnet_spec": _mlp(16, 16),
        },
    },
    "metasr_edsr": {"name": "metasr", "args": {"encoder_spec": _encoder("edsr-baseline", n_resblocks=2, n_feats=8)}},
}


def export(out: pathlib.Path) -> None:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    from liif_jax import convert
    from liif_jax.formats.checkpoints import load_model, save_model
    from liif_jax.models import build_model
    from liif_jax.models.coords import make_cell, make_coord

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    inp = rng.uniform(-1, 1, (2, 10, 13, 3)).astype(np.float32)
    coord = np.broadcast_to(make_coord((H, W)), (2, H * W, 2)).copy()
    cell = np.broadcast_to(make_cell((H, W), H * W), (2, H * W, 2)).copy()
    np.savez(out / "io.npz", inp=inp.transpose(0, 3, 1, 2), coord=coord, cell=cell)
    for i, (name, spec) in enumerate(SPECS.items()):
        model = build_model(spec)
        params = model.init(jax.random.key(i), 10)
        # PyTorch's default init leaves small biases; nudge everything so that no term is ~0.
        params = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(i + 100), x.shape), params)
        save_model(out / f"{name}_ckpt", spec, params, step=5)
        if convert.main([str(out / f"{name}_ckpt"), str(out / f"{name}.pth")]) != 0:
            raise SystemExit(f"export of {name} failed")
        model, params = load_model(out / f"{name}_ckpt")
        np.save(out / f"{name}_out.npy", np.asarray(model.apply(params, jnp.asarray(inp), coord, cell)))
    print(f"exported {', '.join(SPECS)} to {out}")


def check(out: pathlib.Path, official: pathlib.Path) -> None:
    import torch

    if not (official / "models" / "liif.py").is_file():
        raise SystemExit(f"{official} is not a checkout of yinboc/liif (no models/liif.py)")
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, str(official))
    import models

    io = np.load(out / "io.npz")
    inp, coord, cell = (torch.from_numpy(io[k]) for k in ("inp", "coord", "cell"))
    print(f"torch {torch.__version__}")
    worst = 0.0
    for name in SPECS:
        ours = np.load(out / f"{name}_out.npy")
        for mmap in (False, True):
            sv = torch.load(out / f"{name}.pth", mmap=mmap)
            model = models.make(sv["model"], load_sd=True).eval()
            with torch.no_grad():
                err = float(np.abs(model(inp, coord, cell).numpy() - ours).max())
            worst = max(worst, err)
            print(
                f"{name:16s} mmap={mmap!s:5s} {len(sv['model']['sd'])} tensors, output std {ours.std():.3f}, "
                f"max |official - ours| {err:.2e}"
            )
    print(f"largest difference {worst:.2e}")
    if worst > 1e-5:
        raise SystemExit("the official model does not reproduce ours")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["export", "check"])
    parser.add_argument("dir", type=pathlib.Path, help="folder for the exported files")
    parser.add_argument("--official", type=pathlib.Path, help="checkout of yinboc/liif (check only)")
    args = parser.parse_args()
    if args.step == "export":
        export(args.dir)
    elif args.official is None:
        parser.error("check needs --official")
    else:
        check(args.dir, args.official)


if __name__ == "__main__":
    main()
