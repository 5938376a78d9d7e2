"""Imports LTE's official code (jaewon-lee-b/lte, BSD-3) from a checkout, runnable on a CPU-only
machine with torch alone, for the scripts beside this file.

LTE's code needs CUDA, timm (three helpers of SwinIR), torchvision (the image transforms of its
demo and data wrappers) and tensorboardX. None of those is installed or needed here:

* `.cuda()` on tensors and modules is made a no-op when there is no GPU;
* `timm.models.layers` gets the three helpers SwinIR imports, as timm 0.4 defines them:
  `DropPath` (per-sample stochastic depth, `x / keep * floor(keep + U[0, 1))` in training),
  `to_2tuple` and `trunc_normal_` (`torch.nn.init.trunc_normal_`, the same truncation at +-2);
* `torchvision.transforms` gets `ToTensor`, `ToPILImage` and `Resize(size, BICUBIC)` on RGB
  images, as torchvision implements them (`ToPILImage` of a float tensor is `mul(255).byte()`;
  `ToTensor` of a uint8 PIL image is `/ 255` in CHW; `Resize` is PIL's `resize((w, h))`);
* `tensorboardX` is a stand-in (`utils.py` imports `SummaryWriter`, never used here).

Nothing of LTE's code is copied: `--official` names a checkout. `files_digest` records which one.
"""

from __future__ import annotations

import collections.abc
import hashlib
import pathlib
import sys
import types

import numpy as np
from PIL import Image

# The files that define what the vectors hold; their sha256 goes into each MANIFEST.
DIGESTED = (
    "models/lte.py",
    "models/swinir.py",
    "models/liif.py",
    "models/misc.py",
    "models/edsr.py",
    "models/rdn.py",
    "models/mlp.py",
    "demo.py",
    "test.py",
    "train.py",
    "utils.py",
    "datasets/wrappers.py",
)


def _timm_layers(torch) -> types.ModuleType:
    nn = torch.nn

    def drop_path(x, drop_prob: float = 0.0, training: bool = False):
        if drop_prob == 0.0 or not training:
            return x
        keep_prob = 1 - drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
        random_tensor.floor_()
        return x.div(keep_prob) * random_tensor

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return drop_path(x, self.drop_prob, self.training)

    def to_2tuple(x):
        return tuple(x) if isinstance(x, collections.abc.Iterable) else (x, x)

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return nn.init.trunc_normal_(tensor, mean, std, a, b)

    return types.SimpleNamespace(DropPath=DropPath, to_2tuple=to_2tuple, trunc_normal_=trunc_normal_)


def _torchvision(torch) -> types.ModuleType:
    class ToTensor:
        def __call__(self, pic):
            arr = np.asarray(pic)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().float().div(255)

    class ToPILImage:
        def __call__(self, pic):
            if pic.is_floating_point():
                pic = pic.mul(255).byte()
            return Image.fromarray(pic.permute(1, 2, 0).numpy(), "RGB")

    class Resize:
        def __init__(self, size, interpolation=Image.BICUBIC):
            self.size, self.interpolation = size, interpolation

        def __call__(self, img):
            if isinstance(self.size, int):
                if img.size[0] != img.size[1]:
                    raise NotImplementedError("Resize(int) of a non-square image is not needed here")
                h = w = self.size
            else:
                h, w = self.size
            return img.resize((w, h), self.interpolation)

    transforms = types.SimpleNamespace(ToTensor=ToTensor, ToPILImage=ToPILImage, Resize=Resize)
    return types.SimpleNamespace(transforms=transforms, __path__=[])


def import_lte(path: pathlib.Path):
    """LTE's `models` package and `utils` module from a checkout at `path`."""
    import torch

    if not (path / "models" / "lte.py").is_file():
        raise SystemExit(f"{path} is not a checkout of jaewon-lee-b/lte (no models/lte.py)")
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    timm_layers = _timm_layers(torch)
    sys.modules["timm"] = types.SimpleNamespace(__path__=[])
    sys.modules["timm.models"] = types.SimpleNamespace(__path__=[], layers=timm_layers)
    sys.modules["timm.models.layers"] = timm_layers
    vision = _torchvision(torch)
    sys.modules["torchvision"] = vision
    sys.modules["torchvision.transforms"] = vision.transforms
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, str(path))
    import models
    import utils

    return models, utils


def files_digest(path: pathlib.Path) -> dict[str, str]:
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest()[:16] for name in DIGESTED}
