"""The committed reference vectors (tests/data/reference/) from the official PyTorch LIIF code.

    python experiments/reference/make_reference.py --official PATH/TO/liif \
        --photos PATH/TO/skimage/data [--out tests/data/reference]

Runs under PyTorch, not in the project's venv: made with torch 2.13.0 (CPU, float32), numpy and
Pillow, and the official code at yinboc/liif commit cb4c0e8457c2ee7ddf0a1b034f53a91e016a4086,
imported from the checkout given by `--official` (nothing of it is copied here; its `.cuda()` and
tensorboardX are stubbed as in make_metasr_reference.py). `--photos` is scikit-image's `skimage/data`
folder (`os.path.dirname(skimage.data.__file__)`): a few of its photographs are read directly, no
fetcher is called.

The files, names, keys and MANIFEST.json are those of the larger set made with full-width models
(tests read either; see tests/reference.py and the README's Tests section), with narrow models so
that everything stays small (~4 MB, 2.3 MB of it RDN): EDSR-baseline with 4 res-blocks of 16
features, LIIF's MLP [32, 32, 32, 32], random weights from `torch.manual_seed(seed)` (seeds in
MANIFEST.json). Running it again writes the same files.

* `edsr_baseline_liif.npz` and `_no_cell`, `_no_unfold`, `_no_ensemble` (the paper's -c, -u, -e),
  `edsr_liif_small.npz` (EDSR, res_scale 0.1), `rcan_liif_small.npz`, `rdn_liif_small.npz` (RDN
  config A, G0=16: the smallest RDN the official code builds): `param/<official name>` the state
  dict (OIHW conv and (out, in) linear weights, EDSR's unused `sub_mean`/`add_mean` included); `inp`
  (1, 3, H, W) in [-1, 1]; `feat` the encoder output; `coord`, `cell` (1, Q, 2), the first six
  queries exact corners, borders and the centre; `out` = `model(inp, coord, cell)` (1, Q, 3).
  RDN's 3.4 M weights are torch's initial values rounded to a power-of-two grid of about 16 steps
  per tensor, exact in float16 and stored as float16 (compressed ~5x smaller than random float16).
* `train_step_edsr_baseline_liif.npz`: one official training step (batch 2 x 64 queries, `gt` in
  [-1, 1]): `param/*` before, `grad/*` of `nn.L1Loss()`, `after/*` after one `Adam(lr=1e-4)` step
  (`utils.make_optimizer`), `loss` and `loss_after` (the loss with the new weights).
* `eval_div2k_x3.npz`, `eval_benchmark_x4.npz`: the official test path (`test.py` `eval_psnr`, with
  the `sr-implicit-downsampled` and `sr-implicit-paired` wrappers) on a photograph crop `hr_u8`:
  `lr` (CHW in [0, 1]) made by `resize_fn`, the clamped prediction `pred` (CHW) at every HR pixel
  centre, and `utils.calc_psnr` with (`psnr`) and without (`psnr_plain`) the protocol's shave. The
  benchmark HR is stored uncropped; the paired loader crops it top-left to 4 x the LR size.
* `pil_bicubic_resize.npz`: photograph crops `hr_i` and `lr_i` = `resize_fn(hr_i, size)`.
* `psnr.npz`: `sr`, `hr` (1, 3, 40, 36); `calc_psnr` per protocol and scale goes in MANIFEST.json.
* `edsr_baseline_liif_seed1.pth`: `torch.save` of what `train_liif.py` saves (`model` name/args/sd,
  `optimizer` name/args/sd, `epoch`), with the weights of `edsr_baseline_liif.npz`.
* `official_state_dict_shapes.json`: names and shapes of the full-size official EDSR-baseline-LIIF
  and RDN-LIIF state dicts (models instantiated, never run) and their parameter counts without the
  unused mean shifts.

`resize_fn` is the official `ToTensor()(Resize(size, BICUBIC)(ToPILImage()(img)))`; torchvision is
not needed: the same three steps are spelled out in `resize_fn` below (float -> `mul(255).byte()`,
PIL `resize((w, h), BICUBIC)`, `/ 255`), as torchvision implements them.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import pathlib
import sys

import numpy as np
from make_metasr_reference import COMMIT, import_official
from PIL import Image


def encoder(name: str, **args) -> dict:
    return {"name": name, "args": {**args, "no_upsampling": True}}


def liif(enc: dict, hidden=(32, 32, 32, 32), unfold=True, ensemble=True, cell=True) -> dict:
    mlp = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}}
    return {
        "name": "liif",
        "args": {
            "encoder_spec": enc,
            "imnet_spec": mlp,
            "feat_unfold": unfold,
            "local_ensemble": ensemble,
            "cell_decode": cell,
        },
    }


EDSR_BASELINE = encoder("edsr-baseline", n_resblocks=4, n_feats=16)
SMALL = liif(EDSR_BASELINE)
# name, model spec, seed, input (H, W), number of queries, output grid the cell is made for
FORWARD = [
    ("edsr_baseline_liif", SMALL, 1, (12, 10), 300, (31, 27)),
    ("edsr_baseline_liif_no_cell", liif(EDSR_BASELINE, cell=False), 2, (9, 13), 200, (20, 40)),
    ("edsr_baseline_liif_no_unfold", liif(EDSR_BASELINE, unfold=False), 3, (11, 11), 200, (50, 50)),
    ("edsr_baseline_liif_no_ensemble", liif(EDSR_BASELINE, ensemble=False), 4, (8, 14), 200, (17, 23)),
    ("rdn_liif_small", liif(encoder("rdn", G0=16, RDNconfig="A")), 5, (10, 9), 200, (30, 27)),
    ("edsr_liif_small", liif(encoder("edsr", n_resblocks=3, n_feats=16)), 9, (8, 10), 200, (24, 30)),
    (
        "rcan_liif_small",
        liif(encoder("rcan", n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4)),
        10,
        (10, 8),
        200,
        (25, 20),
    ),
]
FLOAT16_GRID = {"rdn_liif_small"}
FULL_SIZE = {
    "edsr-baseline-liif": liif(encoder("edsr-baseline"), hidden=(256,) * 4),
    "rdn-liif": liif(encoder("rdn"), hidden=(256,) * 4),
}
# name, seed, scale, eval_type, photo, top-left corner and size of the HR crop
EVAL = [
    ("eval_div2k_x3", 7, 3, "div2k-3", "coffee.png", (150, 230), (96, 120)),
    ("eval_benchmark_x4", 8, 4, "benchmark-4", "chelsea.png", (60, 140), (90, 100)),
]
# photo, corner, HR (H, W), LR (H, W): downscaling by non-integer and unequal factors, and identity
RESIZE = [
    ("astronaut.png", (40, 180), (54, 54), (20, 20)),
    ("coffee.png", (100, 400), (47, 31), (11, 8)),
    ("motorcycle_left.png", (200, 300), (60, 45), (20, 15)),
    ("chelsea.png", (120, 200), (24, 24), (24, 24)),
]
PSNR_KEYS = {
    "div2k-2": ("div2k", 2),
    "div2k-4": ("div2k", 4),
    "benchmark-2": ("benchmark", 2),
    "benchmark-3": ("benchmark", 3),
    "None-1": (None, 1),
}


def crop(photos: pathlib.Path, name: str, corner: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    img = np.asarray(Image.open(photos / name).convert("RGB"))
    (y, x), (h, w) = corner, size
    if y + h > img.shape[0] or x + w > img.shape[1]:
        raise SystemExit(f"{photos / name}: {img.shape[:2]} too small for a {size} crop at {corner}")
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def to_tensor(img_u8: np.ndarray):
    """torchvision ToTensor on a uint8 HWC image: CHW float32 in [0, 1]."""
    import torch

    return torch.from_numpy(img_u8.copy()).permute(2, 0, 1).float().div(255)


def resize_fn(img, size: tuple[int, int]):
    """The official datasets.wrappers.resize_fn: ToPILImage (mul(255).byte()), PIL bicubic, ToTensor."""
    u8 = img.mul(255).byte().permute(1, 2, 0).numpy()
    return to_tensor(np.asarray(Image.fromarray(u8).resize((size[1], size[0]), Image.BICUBIC)))


def queries(n: int, cell_hw: tuple[int, int]):
    """(1, n, 2) coords, six exact ones then uniform in [-1, 1], and the cell of a cell_hw grid."""
    import torch

    fixed = torch.tensor([[-1, -1], [1, 1], [-1, 1], [1, -1], [0, 0], [-0.999999, 0.999999]], dtype=torch.float32)
    coord = torch.cat([fixed, torch.rand(n - len(fixed), 2) * 2 - 1])[None]
    cell = torch.tensor([2 / cell_hw[0], 2 / cell_hw[1]], dtype=torch.float32).expand(1, n, 2).contiguous()
    return coord, cell


def on_float16_grid(state_dict) -> collections.OrderedDict:
    """Each tensor rounded to multiples of 2**k with 4 <= max|w| / 2**k < 8: exact in float16."""
    out = collections.OrderedDict()
    for k, v in state_dict.items():
        step = 2.0 ** math.floor(math.log2(float(v.abs().max()) / 4))
        out[k] = (v / step).round() * step
    return out


def params(model, prefix: str = "param/", dtype=np.float32) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().numpy().astype(dtype) for k, v in model.state_dict().items()}


def forward(models, name, spec, seed, in_hw, n_queries, cell_hw):
    import torch

    torch.manual_seed(seed)
    model = models.make(spec).eval()
    if name in FLOAT16_GRID:
        model.load_state_dict(on_float16_grid(model.state_dict()))
    inp = torch.rand(1, 3, *in_hw) * 2 - 1
    coord, cell = queries(n_queries, cell_hw)
    with torch.no_grad():
        feat = model.gen_feat(inp)
        out = model(inp, coord, cell)
    dtype = np.float16 if name in FLOAT16_GRID else np.float32
    arrays = {
        **params(model, dtype=dtype),
        "inp": inp.numpy(),
        "coord": coord.numpy(),
        "cell": cell.numpy(),
        "feat": feat.numpy(),
        "out": out.numpy(),
    }
    entry = {
        "name": name,
        "model_spec": spec,
        "seed": seed,
        "in_hw": list(in_hw),
        "n_queries": n_queries,
        "cell_for_hw": list(cell_hw),
        "param_dtype": "float16 (exact values used in float32)" if dtype == np.float16 else "float32",
    }
    return arrays, entry, model


ADAM_STEP = {
    "optimizer": "Adam lr=1e-4 (torch defaults betas=(0.9,0.999), eps=1e-8)",
    "loss": "L1 mean over all elements",
}


def adam_step(model, inp, utils, state) -> dict[str, np.ndarray]:
    """One official training step of `model` on `inp` and 64 queries drawn next from torch's RNG
    (batch 2, `gt` in [-1, 1]): `state(model, prefix)` before and after, the L1 gradients, both
    losses and the inputs. LTE's reference (make_lte_reference.py) takes the same step."""
    import torch

    coord = torch.rand(2, 64, 2) * 2 - 1
    cell = torch.tensor([2 / 31, 2 / 27]).expand(2, 64, 2).contiguous()
    gt = torch.rand(2, 64, 3) * 2 - 1
    optimizer = utils.make_optimizer(model.parameters(), {"name": "adam", "args": {"lr": 1e-4}})
    arrays = state(model, "param/")
    loss = torch.nn.L1Loss()(model(inp, coord, cell), gt)
    optimizer.zero_grad()
    loss.backward()
    arrays.update({f"grad/{k}": p.grad.numpy().copy() for k, p in model.named_parameters() if p.grad is not None})
    optimizer.step()
    arrays.update(state(model, "after/"))
    with torch.no_grad():
        loss_after = torch.nn.L1Loss()(model(inp, coord, cell), gt)
    arrays.update(
        inp=inp.numpy(),
        coord=coord.numpy(),
        cell=cell.numpy(),
        gt=gt.numpy(),
        loss=loss.detach().numpy(),
        loss_after=loss_after.numpy(),
    )
    return arrays


def train_step(models, utils):
    import torch

    seed = 6
    torch.manual_seed(seed)
    model = models.make(SMALL).train()
    inp = torch.rand(2, 3, 12, 10) * 2 - 1
    arrays = adam_step(model, inp, utils, params)
    entry = {"name": "train_step_edsr_baseline_liif", "model_spec": SMALL, "seed": seed, **ADAM_STEP}
    return arrays, entry


def evaluation(models, utils, photos, name, seed, scale, eval_type, photo, corner, size):
    """One image through the official wrappers' test path and test.py's eval_psnr."""
    import torch

    torch.manual_seed(seed)
    model = models.make(SMALL).eval()
    hr_u8 = crop(photos, photo, corner, size)
    img = to_tensor(hr_u8)
    h, w = math.floor(img.shape[-2] / scale + 1e-9), math.floor(img.shape[-1] / scale + 1e-9)
    img = img[:, : h * scale, : w * scale]  # both wrappers crop the HR to scale x the LR size
    lr = resize_fn(img, (h, w))
    H, W = img.shape[-2:]
    coord = utils.make_coord((H, W))[None]
    cell = torch.tensor([2 / H, 2 / W]).expand(1, H * W, 2).contiguous()
    with torch.no_grad():
        pred = model((lr[None] - 0.5) / 0.5, coord, cell) * 0.5 + 0.5
    pred.clamp_(0, 1)
    pred = pred.view(1, H, W, 3).permute(0, 3, 1, 2).contiguous()
    dataset = eval_type.split("-")[0]
    psnr = utils.calc_psnr(pred, img[None], dataset=dataset, scale=scale).item()
    psnr_plain = utils.calc_psnr(pred, img[None]).item()
    arrays = {
        **params(model),
        "hr_u8": hr_u8,
        "lr": lr.numpy(),
        "pred": pred[0].numpy(),
        "psnr": np.float64(psnr),
        "psnr_plain": np.float64(psnr_plain),
    }
    entry = {
        "name": name,
        "model_spec": SMALL,
        "seed": seed,
        "scale": scale,
        "eval_type": eval_type,
        "psnr": psnr,
        "psnr_no_shave": psnr_plain,
        "hr_shape": list(hr_u8.shape),
        "lr_shape": list(lr.shape),
    }
    return arrays, entry


def bicubic_pairs(photos):
    arrays, pairs = {}, []
    for i, (photo, corner, hr_hw, lr_hw) in enumerate(RESIZE):
        hr = crop(photos, photo, corner, hr_hw)
        arrays[f"hr_{i}"] = hr
        arrays[f"lr_{i}"] = (resize_fn(to_tensor(hr), lr_hw) * 255).round().byte().permute(1, 2, 0).numpy()
        pairs.append({"hr": list(hr_hw), "lr": list(lr_hw)})
    note = "PIL bicubic (Image.BICUBIC) on uint8, as the reference resize_fn"
    return arrays, {"name": "pil_bicubic_resize", "pairs": pairs, "note": note}


def psnr_pair(utils, photos):
    import torch

    hr = to_tensor(crop(photos, "astronaut.png", (200, 230), (40, 36)))[None]
    noise = np.random.default_rng(11).normal(0, 0.05, hr.shape).astype(np.float32)
    sr = (hr + torch.from_numpy(noise)).clamp(0, 1)
    values = {k: utils.calc_psnr(sr, hr, dataset=d, scale=s).item() for k, (d, s) in PSNR_KEYS.items()}
    return {"sr": sr.numpy(), "hr": hr.numpy()}, {"name": "psnr", "psnr": values}


def save_pth(models, utils, path: pathlib.Path):
    """What train_liif.py saves after epoch 1, with the weights of edsr_baseline_liif.npz (seed 1)."""
    import torch

    torch.manual_seed(1)
    model = models.make(SMALL)
    optimizer_spec = {"name": "adam", "args": {"lr": 1e-4}}
    optimizer = utils.make_optimizer(model.parameters(), optimizer_spec)
    sv_file = {
        "model": {**SMALL, "sd": model.state_dict()},
        "optimizer": {**optimizer_spec, "sd": optimizer.state_dict()},
        "epoch": 1,
    }
    torch.save(sv_file, path)


def full_size_shapes(models) -> dict:
    shapes = {}
    for name, spec in FULL_SIZE.items():
        sd = models.make(spec).state_dict()
        used = [v.numel() for k, v in sd.items() if not k.startswith(("encoder.sub_mean.", "encoder.add_mean."))]
        shapes[name] = {
            "model_spec": spec,
            "state_dict": {k: list(v.shape) for k, v in sd.items()},
            "num_params": sum(used),
        }
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=pathlib.Path, required=True, help="checkout of yinboc/liif")
    parser.add_argument("--photos", type=pathlib.Path, required=True, help="scikit-image's skimage/data folder")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/data/reference"))
    args = parser.parse_args(argv)
    if not (args.photos / "astronaut.png").is_file():
        raise SystemExit(f"{args.photos} is not scikit-image's data folder (no astronaut.png)")

    import torch

    models, _ = import_official(args.official.resolve())
    import utils  # the official utils.py, on sys.path now

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []

    def write(name: str, arrays: dict, entry: dict) -> None:
        np.savez_compressed(args.out / f"{name}.npz", **arrays)
        manifest.append(entry)

    models_by_name = {}
    for name, *rest in FORWARD:
        arrays, entry, models_by_name[name] = forward(models, name, *rest)
        write(name, arrays, entry)
    write("train_step_edsr_baseline_liif", *train_step(models, utils))
    for name, *rest in EVAL:
        write(name, *evaluation(models, utils, args.photos, name, *rest))
    write("pil_bicubic_resize", *bicubic_pairs(args.photos))
    write("psnr", *psnr_pair(utils, args.photos))

    save_pth(models, utils, args.out / "edsr_baseline_liif_seed1.pth")
    twin = models_by_name["edsr_baseline_liif"].state_dict()
    saved = torch.load(args.out / "edsr_baseline_liif_seed1.pth")["model"]["sd"]
    assert all(torch.equal(saved[k], v) for k, v in twin.items()), "the .pth must hold edsr_baseline_liif's weights"

    (args.out / "official_state_dict_shapes.json").write_text(json.dumps(full_size_shapes(models), indent=1))
    meta = {"torch": torch.__version__, "official_commit": COMMIT}
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(manifest)} entries to {args.out} ({total / 1e6:.2f} MB), {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
