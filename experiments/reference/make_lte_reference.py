"""The committed LTE / SwinIR reference vectors (tests/data/lte_reference/) from LTE's own code.

    python experiments/reference/make_lte_reference.py --official PATH/TO/lte \
        --photos PATH/TO/skimage/data [--out tests/data/lte_reference]

Runs under PyTorch, not in the project's venv: made with torch 2.13.0 (CPU, float32), numpy and
Pillow, and LTE's code (jaewon-lee-b/lte) imported from the checkout `--official` names, with the
stand-ins of `lte_official.py` (no CUDA, timm, torchvision or tensorboardX needed; the sha256 of
LTE's files goes into MANIFEST.json). `--photos` is scikit-image's `skimage/data` folder.

Compact models keep the files small (~1.5 MB). LTE's `swinir` factory builds only the full SwinIR
(180 channels, 6 x 6 blocks); here the registry's `swinir` passes its args on to LTE's `SwinIR`
constructor (`img_size`, `embed_dim`, `depths`, `num_heads`, `window_size`, `mlp_ratio`,
`drop_path_rate`), which liif_jax's spec accepts too, so the same class computes every vector.
Random weights from `torch.manual_seed(seed)`; running it again writes the same files.

* `<name>.npz` for `edsr_baseline_lte` (EDSR-baseline 2x8, hidden_dim 16, MLP [16, 16]),
  `swinir_lte_w4` (SwinIR embed 12, depths [2, 2], heads [2, 3], window 4, on 10x13 inputs: padded
  to 12x16, so LTE's input-size `feat_coord` and its padded feature grid differ), `swinir_lte_w8`
  (window 8, shift 4, on 17x20 -> 24x24), `swinir_liif` and `swinir_metasr` (the window-4 SwinIR
  under LIIF and MetaSR; MetaSR's imnet on a float16 grid, stored as float16): `param/<official
  name>` the state dict (buffers `relative_position_index` and `attn_mask` included), `inp`
  (B, 3, h, w) in [-1, 1], `feat` the encoder output, `coord`, `cell` (B, Q, 2): pixel centres of
  output grids at scales 1 ... 12 (every grid's corners, border and interior samples), `scale`
  (Q, 2) the scale each query's grid was made for, `out` = `model(inp, coord, cell)`, and
  `out_clamp` = the same with LTE's cell clamp `cell * max(scale / 4, 1)` (demo.py, test.py).
* `train_step_<name>.npz` for `edsr_baseline_lte` and `swinir_lte_w4` (drop_path_rate 0: LTE's
  SwinIR trains with stochastic depth 0.1, whose random masks no other code can repeat): `param/*`
  before, `grad/*` of `nn.L1Loss()`, `after/*` after one `Adam(lr=1e-4)` step, `loss`, `loss_after`.
* `edsr_baseline_lte.pth`, `swinir_lte_w4.pth`: what LTE's train.py saves (`model` with `sd`,
  `optimizer` with `sd`, `epoch`), holding the weights of the `.npz` of the same name.
* `demo_<name>_x<S>.png` for `edsr_baseline_lte` and `swinir_lte_w4`, S = 3 and 6: LTE's own
  `demo.py --input demo_input.png --model <name>.pth --scale S`, run as it is (`runpy`).
  `demo_input.png` is a 15x19 crop of chelsea.png. (LTE's demo.py never calls `model.eval()`, so
  SwinIR's stochastic depth stays on in it; at these random weights its branches are small and the
  PNG moves by at most a level: see experiments/results/lte_demo_check_cpu.md.)
* `eval_<name>.npz`: LTE's `test.py` `eval_psnr` (div2k-6, eval_bsize 30000, scale_max 4) on a
  crop of coffee.png through the `sr-implicit-downsampled` wrapper: `hr_u8`, the clamped
  prediction `pred` (CHW, cropped as test.py crops it) and `psnr`; `edsr_baseline_lte` without
  `--window`, `swinir_lte_w8` with `--window 8` (its reflection padding of the input).
* `official_state_dict_shapes.json`: names and shapes of the full-size state dicts of LTE's five
  training configs' models (instantiated, never run) and their parameter counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import pathlib
import runpy
import sys

import numpy as np
from lte_official import files_digest, import_lte
from make_reference import ADAM_STEP, adam_step
from PIL import Image


def swinir(**args) -> dict:
    return {"name": "swinir", "args": {"no_upsampling": True, **args}}


def mlp(*hidden: int) -> dict:
    return {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}}


def lte(enc: dict, hidden_dim: int = 16, hidden=(16, 16)) -> dict:
    return {"name": "lte", "args": {"encoder_spec": enc, "imnet_spec": mlp(*hidden), "hidden_dim": hidden_dim}}


EDSR_BASELINE = {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 8, "no_upsampling": True}}
SWINIR_W4 = swinir(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 3], window_size=4, mlp_ratio=2.0)
SWINIR_W8 = swinir(embed_dim=12, depths=[2], num_heads=[2], window_size=8)
SPECS = {
    "edsr_baseline_lte": lte(EDSR_BASELINE),
    "swinir_lte_w4": lte(SWINIR_W4),
    "swinir_lte_w8": lte(SWINIR_W8),
    "swinir_liif": {"name": "liif", "args": {"encoder_spec": SWINIR_W4, "imnet_spec": mlp(16, 16)}},
    "swinir_metasr": {"name": "metasr", "args": {"encoder_spec": SWINIR_W4}},
}
# name, seed, batch, input (h, w)
FORWARD = [
    ("edsr_baseline_lte", 1, 2, (9, 11)),
    ("swinir_lte_w4", 2, 2, (10, 13)),
    ("swinir_lte_w8", 3, 1, (17, 20)),
    ("swinir_liif", 4, 1, (10, 13)),
    ("swinir_metasr", 5, 1, (10, 13)),
]
FLOAT16_GRID = {"swinir_metasr"}
# (row scale, col scale) of the query grids: integer (ties on latent edges), non-integer, unequal,
# and beyond the training range, where the cell clamp acts.
SCALES = [(1.0, 1.0), (2.0, 2.0), (3.3, 3.3), (3.1, 1.6), (6.0, 6.0), (12.0, 12.0)]
N_BORDER, N_INTERIOR = 12, 12
SCALE_MAX = 4  # LTE's demo.py and test.py default
TRAIN = [("edsr_baseline_lte", 6, (12, 10)), ("swinir_lte_w4", 7, (10, 13))]
DEMO_SCALES = (3, 6)
DEMO_CROP = ("chelsea.png", (100, 160), (15, 19))
EVAL = [("edsr_baseline_lte", 8, 0), ("swinir_lte_w8", 9, 8)]
EVAL_CROP = ("coffee.png", (150, 230), (45, 57))
FULL_SIZE = {
    "edsr-baseline-lte": lte({"name": "edsr-baseline", "args": {"no_upsampling": True}}, 256, (256,) * 3),
    "rdn-lte": lte({"name": "rdn", "args": {"no_upsampling": True}}, 256, (256,) * 3),
    "swinir-lte": lte(swinir(), 256, (256,) * 3),
    "swinir-liif": {"name": "liif", "args": {"encoder_spec": swinir(), "imnet_spec": mlp(256, 256, 256, 256)}},
    "swinir-metasr": {"name": "metasr", "args": {"encoder_spec": swinir()}},
}


def register_compact_swinir(models) -> None:
    """LTE's registry `swinir` entry, passing its args on to LTE's SwinIR class."""
    from models.swinir import SwinIR

    def make_swinir(no_upsampling=True, **args):
        return SwinIR(**args)

    models.models.models["swinir"] = make_swinir  # the registry dict of models/models.py


def crop(photos: pathlib.Path, name: str, corner, size) -> np.ndarray:
    img = np.asarray(Image.open(photos / name).convert("RGB"))
    (y, x), (h, w) = corner, size
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def grid_queries(rng, make_coord, hw, batch):
    """(B, Q, 2) pixel centres of an (H, W) grid (corners, border and interior samples, a different
    sample per batch element) and their cells."""
    H, W = hw
    coord = make_coord((H, W), flatten=False).numpy()
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    border = (rows == 0) | (rows == H - 1) | (cols == 0) | (cols == W - 1)
    corners = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]
    edge = [(r, c) for r, c in zip(rows[border], cols[border]) if (r, c) not in corners]
    inner = list(zip(rows[~border], cols[~border]))
    pick = lambda xs, n: [xs[i] for i in rng.choice(len(xs), size=min(n, len(xs)), replace=False)] if xs else []
    out = []
    for _ in range(batch):
        idx = corners + pick(edge, N_BORDER) + pick(inner, N_INTERIOR)
        out.append(np.stack([coord[r, k] for r, k in idx]).astype(np.float32))
    n = min(len(o) for o in out)
    c = np.stack([o[:n] for o in out])
    cell = np.broadcast_to(np.array([2 / H, 2 / W], np.float32), c.shape).copy()
    return c, cell


def queries(make_coord, seed, batch, in_hw):
    rng = np.random.default_rng(seed)
    coords, cells, scales = [], [], []
    for sh, sw in SCALES:
        hw = (round(in_hw[0] * sh), round(in_hw[1] * sw))
        c, cl = grid_queries(rng, make_coord, hw, batch)
        coords.append(c)
        cells.append(cl)
        scales.append(np.tile(np.array([sh, sw], np.float32), (c.shape[1], 1)))
    return np.concatenate(coords, 1), np.concatenate(cells, 1), np.concatenate(scales)


def on_float16_grid(state_dict) -> collections.OrderedDict:
    """Float tensors rounded to multiples of 2**k with 4 <= max|w| / 2**k < 8: exact in float16."""
    out = collections.OrderedDict()
    for k, v in state_dict.items():
        if v.is_floating_point() and v.abs().max() > 0:
            step = 2.0 ** math.floor(math.log2(float(v.abs().max()) / 4))
            v = (v / step).round() * step
        out[k] = v
    return out


def state_arrays(model, prefix="param/", float16=False) -> dict[str, np.ndarray]:
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().numpy().copy()  # a copy: the optimizer updates the tensors in place
        out[prefix + k] = a.astype(np.float16) if float16 and a.dtype == np.float32 else a
    return out


def forward(models, utils, name, seed, batch, in_hw):
    import torch

    torch.manual_seed(seed)
    model = models.make(SPECS[name]).eval()
    if name in FLOAT16_GRID:
        model.load_state_dict(on_float16_grid(model.state_dict()))
    inp = torch.rand(batch, 3, *in_hw) * 2 - 1
    coord, cell, scale = queries(utils.make_coord, seed, batch, in_hw)
    factor = np.maximum(scale[:, :1] / SCALE_MAX, 1).astype(np.float32)  # per query, by its row scale
    cell_clamp = (torch.from_numpy(cell) * torch.from_numpy(factor)).numpy()
    with torch.no_grad():
        feat = model.gen_feat(inp)
        out = model(inp, torch.from_numpy(coord), torch.from_numpy(cell))
        out_clamp = model(inp, torch.from_numpy(coord), torch.from_numpy(cell_clamp))
    arrays = {
        **state_arrays(model, float16=name in FLOAT16_GRID),
        "inp": inp.numpy(),
        "feat": feat.numpy(),
        "coord": coord,
        "cell": cell,
        "scale": scale,
        "out": out.numpy(),
        "cell_clamp": cell_clamp,
        "out_clamp": out_clamp.numpy(),
    }
    entry = {
        "name": name,
        "model_spec": SPECS[name],
        "seed": seed,
        "in_hw": list(in_hw),
        "batch": batch,
        "scales": SCALES,
        "scale_max": SCALE_MAX,
        "param_dtype": "float16 (exact values used in float32)" if name in FLOAT16_GRID else "float32",
    }
    return arrays, entry, model


def train_step(models, utils, name, seed, in_hw):
    import torch

    spec = json.loads(json.dumps(SPECS[name]))
    if spec["args"]["encoder_spec"]["name"] == "swinir":
        spec["args"]["encoder_spec"]["args"]["drop_path_rate"] = 0.0
    torch.manual_seed(seed)
    model = models.make(spec).train()
    inp = torch.rand(2, 3, *in_hw) * 2 - 1
    arrays = adam_step(model, inp, utils, state_arrays)
    entry = {"name": f"train_step_{name}", "model_spec": spec, "seed": seed, "in_hw": list(in_hw), **ADAM_STEP}
    return arrays, entry


def save_pth(utils, model, spec, path: pathlib.Path) -> None:
    """As LTE's train.py saves after an epoch: model spec with `sd`, optimizer spec with `sd`, epoch."""
    import torch

    optimizer_spec = {"name": "adam", "args": {"lr": 1e-4}}
    optimizer = utils.make_optimizer(model.parameters(), optimizer_spec)
    sv_file = {
        "model": {**json.loads(json.dumps(spec)), "sd": model.state_dict()},
        "optimizer": {**optimizer_spec, "sd": optimizer.state_dict()},
        "epoch": 1,
    }
    torch.save(sv_file, path)


def run_demo(official: pathlib.Path, inp: pathlib.Path, model: pathlib.Path, scale: int, out: pathlib.Path) -> None:
    """LTE's demo.py, unchanged, as `python demo.py --input ... --model ... --scale S --output ...`."""
    argv = sys.argv
    sys.argv = ["demo.py", "--input", str(inp), "--model", str(model), "--scale", str(scale), "--output", str(out)]
    try:
        runpy.run_path(str(official / "demo.py"), run_name="__main__")
    finally:
        sys.argv = argv


def evaluation(official, models, utils, photos, name, seed, window):
    """LTE's test.py `eval_psnr` on one image through its `sr-implicit-downsampled` wrapper."""
    import torch

    sys.path.insert(0, str(official))
    import datasets
    import test

    torch.manual_seed(seed)
    model = models.make(SPECS[name]).eval()
    hr_u8 = crop(photos, *EVAL_CROP)
    img = torch.from_numpy(hr_u8.copy()).permute(2, 0, 1).float().div(255)
    wrapper = datasets.make({"name": "sr-implicit-downsampled", "args": {"scale_min": 6}}, args={"dataset": [img]})
    sample = wrapper[0]
    batch = {k: v[None] for k, v in sample.items()}
    seen = {}
    calc_psnr = test.utils.calc_psnr

    def recording(sr, hr, **kw):
        seen["pred"], seen["gt"] = sr.clone(), hr.clone()
        return calc_psnr(sr, hr, **kw)

    test.utils.calc_psnr = recording
    try:
        norm = {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}}
        psnr = test.eval_psnr(
            [batch],
            model,
            data_norm=norm,
            eval_type="div2k-6",
            eval_bsize=30000,
            window_size=window,
            scale_max=SCALE_MAX,
        )
    finally:
        test.utils.calc_psnr = calc_psnr
    arrays = {
        **state_arrays(model),
        "hr_u8": hr_u8,
        "lr": sample["inp"].numpy(),
        "pred": seen["pred"][0].numpy(),
        "gt": seen["gt"][0].numpy(),
        "psnr": np.float64(psnr),
    }
    entry = {
        "name": f"eval_{name}",
        "model_spec": SPECS[name],
        "seed": seed,
        "eval_type": "div2k-6",
        "window": window,
        "scale_max": SCALE_MAX,
        "psnr": psnr,
        "hr_shape": list(hr_u8.shape),
    }
    return arrays, entry


def full_size_shapes(models) -> dict:
    shapes = {}
    for name, spec in FULL_SIZE.items():
        sd = models.make(spec).state_dict()
        params = dict(models.make(spec).named_parameters())
        shapes[name] = {
            "model_spec": spec,
            "state_dict": {k: list(v.shape) for k, v in sd.items()},
            "num_params": sum(v.numel() for v in params.values()),
            "buffers": sorted(k for k in sd if k not in params),
        }
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=pathlib.Path, required=True, help="checkout of jaewon-lee-b/lte")
    parser.add_argument("--photos", type=pathlib.Path, required=True, help="scikit-image's skimage/data folder")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/data/lte_reference"))
    args = parser.parse_args(argv)
    official = args.official.resolve()
    out = args.out.resolve()

    import torch

    models, utils = import_lte(official)
    shapes = full_size_shapes(models)  # with LTE's own swinir factory, before the compact one
    register_compact_swinir(models)
    out.mkdir(parents=True, exist_ok=True)
    manifest = []

    def write(name: str, arrays: dict, entry: dict) -> None:
        np.savez_compressed(out / f"{name}.npz", **arrays)
        manifest.append(entry)

    built = {}
    for name, *rest in FORWARD:
        arrays, entry, built[name] = forward(models, utils, name, *rest)
        write(name, arrays, entry)
    for name, seed, in_hw in TRAIN:
        write(f"train_step_{name}", *train_step(models, utils, name, seed, in_hw))
    Image.fromarray(crop(args.photos, *DEMO_CROP)).save(out / "demo_input.png")
    for name in ("edsr_baseline_lte", "swinir_lte_w4"):
        save_pth(utils, built[name], SPECS[name], out / f"{name}.pth")
        saved = torch.load(out / f"{name}.pth")["model"]["sd"]
        assert all(torch.equal(saved[k], v) for k, v in built[name].state_dict().items())
        for s in DEMO_SCALES:
            run_demo(official, out / "demo_input.png", out / f"{name}.pth", s, out / f"demo_{name}_x{s}.png")
        manifest.append(
            {
                "name": f"demo_{name}",
                "model_spec": SPECS[name],
                "pth": f"{name}.pth",
                "input": "demo_input.png",
                "scales": list(DEMO_SCALES),
                "outputs": [f"demo_{name}_x{s}.png" for s in DEMO_SCALES],
            }
        )
    for name, seed, window in EVAL:
        write(f"eval_{name}", *evaluation(official, models, utils, args.photos, name, seed, window))
    (out / "official_state_dict_shapes.json").write_text(json.dumps(shapes, indent=1))
    meta = {"torch": torch.__version__, "lte_files_sha256": files_digest(official)}
    (out / "MANIFEST.json").write_text(json.dumps({"meta": meta, "entries": manifest}, indent=1))
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(manifest)} entries to {out} ({total / 1e6:.2f} MB), torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
