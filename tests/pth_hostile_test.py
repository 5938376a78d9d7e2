"""Crafted `.pth` files: every one is refused with `CheckpointError` naming the file, quickly and
without reading memory outside the file; valid files still load. The files are made here, with a
small pickler that writes whatever a hostile `torch.save` file could say."""

import collections
import dataclasses
import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from liif_jax.formats import pth, state_dict
from liif_jax.formats.pth import CheckpointError, Limits

HERE = pathlib.Path(__file__).parent


@dataclasses.dataclass
class Tensor:
    """A tensor record exactly as the pickle states it: nothing is checked."""

    key: str = "0"
    numel: int = 4
    offset: int = 0
    size: tuple = (4,)
    stride: tuple = (1,)
    storage: str = "FloatStorage"


@dataclasses.dataclass
class Global:
    module: str
    name: str


class _Crafter(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and obj and obj[0] == "<storage>":
            return ("storage", *obj[1:])
        return None

    def _global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def _tensor(self, t):
        self.save(Global("torch._utils", "_rebuild_tensor_v2"))
        storage = ("<storage>", Global("torch", t.storage), t.key, "cpu", t.numel)
        self.save((storage, t.offset, t.size, t.stride, False, collections.OrderedDict()))
        self.write(pickle.REDUCE)

    dispatch[Global] = _global
    dispatch[Tensor] = _tensor


def pickled(obj) -> bytes:
    buf = io.BytesIO()
    _Crafter(buf).dump(obj)
    return buf.getvalue()


def craft(path, obj=None, storages=None, pkl: bytes | None = None, compress=zipfile.ZIP_STORED, byteorder=b"little"):
    """A torch.save-like zip: `archive/data.pkl` (pickled `obj`, or raw `pkl`) and storage records."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pkl if pkl is not None else pickled(obj))
        z.writestr("archive/byteorder", byteorder)
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
    return path


def f32(*values) -> bytes:
    return np.asarray(values, np.float32).tobytes()


def refused(path, match, limits=None):
    with pytest.raises(CheckpointError, match=match) as info:
        pth.load_pth(path, limits or Limits())
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_crafted_valid_file_loads(tmp_path):
    """The crafter writes what torch writes: a view inside its storage loads as that view."""
    obj = {"w": Tensor(numel=6, offset=1, size=(2, 2), stride=(1, 2))}
    out = pth.load_pth(craft(tmp_path / "ok.pth", obj, {"0": f32(0, 1, 2, 3, 4, 5)}))
    np.testing.assert_array_equal(out["w"], [[1, 3], [2, 4]])
    assert out["w"].flags.owndata or out["w"].base is not None  # a copy, not a view of foreign memory


@pytest.mark.parametrize(
    "tensor, match",
    [
        (Tensor(numel=1, size=(4096, 76), stride=(76, 1)), "reaches element 311295, but the storage holds 1"),
        (Tensor(numel=4, size=(2,), stride=(2**40,)), "reaches element 1099511627776"),
        (Tensor(numel=4, size=(4,), stride=(-1,)), "stride must be a non-negative integer, got -1"),
        (Tensor(numel=4, offset=-3), "offset must be a non-negative integer, got -3"),
        (Tensor(numel=4, offset=4), "reaches element 7"),
        (Tensor(numel=4, offset=True), "offset must be a non-negative integer, got True"),
        (Tensor(numel=4, size=(2.0,), stride=(1,)), "size must be a non-negative integer, got 2.0"),
        (Tensor(numel=4, size=(2, 2), stride=(1,)), "do not match"),
        (Tensor(numel=4, size=(1,) * 40, stride=(1,) * 40), "40 dimensions"),
        (Tensor(numel=1, size=(40000, 40000), stride=(0, 0)), "past the limit of"),
    ],
)
def test_views_outside_their_storage_are_refused(tmp_path, tensor, match):
    storage = np.arange(tensor.numel, dtype=np.float32).tobytes()
    start = time.perf_counter()
    refused(craft(tmp_path / "view.pth", {"w": tensor}, {"0": storage}), match)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "tensor, storage, match",
    [
        (Tensor(numel=4), f32(1, 2), "declares 8 bytes, but 4 elements of float32 take 16"),
        (
            Tensor(numel=4, storage="ComplexFloatStorage"),
            f32(1, 2, 3, 4),
            "refusing to load 'torch.ComplexFloatStorage'",
        ),
        (Tensor(key="../../etc/passwd"), f32(1, 2, 3, 4), "is not a short name"),
        (Tensor(key="7"), f32(1, 2, 3, 4), "storage record archive/data/7 is missing"),
        (Tensor(numel=-4), f32(1, 2, 3, 4), "element count must be a non-negative integer"),
    ],
)
def test_storages_that_do_not_match_their_records_are_refused(tmp_path, tensor, storage, match):
    refused(craft(tmp_path / "storage.pth", {"w": tensor}, {"0": storage}), match)


def _patch_sizes(path, member: str, size: int) -> None:
    """Rewrites a member's declared uncompressed size in its local and central headers."""
    data = bytearray(pathlib.Path(path).read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data[info.header_offset + 22 : info.header_offset + 26] = size.to_bytes(4, "little")  # local header
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + int.from_bytes(data[at + 28 : at + 30], "little")] != member.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    data[at + 24 : at + 28] = size.to_bytes(4, "little")  # central directory record
    pathlib.Path(path).write_bytes(bytes(data))


def test_decompression_bombs_are_stopped_before_or_while_decompressing(tmp_path):
    zeros = bytes(64 << 20)  # 64 MB of zeros: a deflated record of about 64 KB
    # 1. Declared honestly: 16M float32 elements, refused by the byte limit before decompressing.
    honest = craft(
        tmp_path / "bomb1.pth",
        {"w": Tensor(numel=16 << 20, size=(16 << 20,))},
        {"0": zeros},
        compress=zipfile.ZIP_DEFLATED,
    )
    refused(
        honest, "storage 0 would take the bytes read and copied past the limit of 1048576", Limits(max_bytes=1 << 20)
    )
    # 2. Declared as 16 bytes: decompression stops at 16 bytes, and the CRC of the whole record fails.
    liar = craft(tmp_path / "bomb2.pth", {"w": Tensor()}, {"0": zeros}, compress=zipfile.ZIP_DEFLATED)
    _patch_sizes(liar, "archive/data/0", 16)
    start = time.perf_counter()
    refused(liar, "damaged checkpoint .*CRC")
    assert time.perf_counter() - start < 2
    # 3. Compression methods torch never writes (bzip2 expands without bound per read).
    refused(
        craft(tmp_path / "bz.pth", {"w": Tensor()}, {"0": f32(1, 2, 3, 4)}, compress=zipfile.ZIP_BZIP2),
        "compression method 12",
    )


def test_pickle_size_depth_and_container_limits(tmp_path):
    refused(
        craft(tmp_path / "big.pth", {"x": "a" * 5000}),
        r"data.pkl is \d+ bytes \(limit 1000\)",
        Limits(max_pickle_bytes=1000),
    )
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."  # 100000 nested lists
    start = time.perf_counter()
    refused(craft(tmp_path / "deep.pth", pkl=deep), "nesting deeper than 64 levels")
    # Shared entries: 6 levels of 100 references to the level below, 10^12 leaves from a 2 KB pickle.
    shared = b"\x80\x02K\x00"
    for level in range(6):
        shared += b"q" + bytes([level]) + b"(" + (b"h" + bytes([level])) * 100 + b"l"
    refused(craft(tmp_path / "shared.pth", pkl=shared + b"."), "more than 1000000 entries")
    cycle = b"\x80\x02]q\x00h\x00a."  # a list that holds itself
    refused(craft(tmp_path / "cycle.pth", pkl=cycle), "nesting deeper")
    assert time.perf_counter() - start < 10


def test_zip_directory_limits(tmp_path):
    path = tmp_path / "many.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled({}))
        for i in range(20):
            z.writestr(f"archive/junk/{i}", b"")
    refused(path, r"archive directory of 21 records, \d+ bytes, is over the limits", Limits(max_members=10))


@pytest.mark.parametrize(
    "pkl, match",
    [
        (pickled({"s": Global("torch", "FloatStorage")}), "unexpected object of type _StorageType"),
        (pickled({"f": Global("torch._utils", "_rebuild_tensor_v2")}), "unexpected object of type method"),
        (pickled(Global("posix", "system")), "refusing to load 'posix.system'"),
        (b"\x80\x02X\x01\x00\x00\x00aQ.", "unexpected persistent id 'a'"),  # BINPERSID of a string
        (b"\x80\x02}q\x00", "damaged checkpoint"),  # no STOP
        (b"\x80\x02c__builtin__\neval\n.", "refusing to load '__builtin__.eval'"),
        (b"\x80\x05\x97.", "damaged checkpoint"),  # NEXT_BUFFER, protocol 5
        # BUILD on a storage, replacing its array (which could steer later views past its end).
        (
            pickled(("<storage>", Global("torch", "FloatStorage"), "0", "cpu", 4))[:-1]
            + b"}X\x05\x00\x00\x00arrayK\x01sb.",
            "the pickle tries to change a Storage object",
        ),
        (
            pickled(Global("torch", "FloatStorage"))[:-1] + b"}X\x05\x00\x00\x00dtypeK\x01sb.",
            "the pickle tries to change a StorageType object",
        ),
    ],
)
def test_pickles_that_are_not_state_dicts_are_refused(tmp_path, pkl, match):
    refused(craft(tmp_path / "p.pth", pkl=pkl, storages={"0": f32(1, 2, 3, 4)}), match)


def test_byteorder_and_archive_layout(tmp_path):
    refused(craft(tmp_path / "order.pth", {}, byteorder=b"middle"), "says 'middle'; expected 'little' or 'big'")
    big = craft(
        tmp_path / "big_endian.pth", {"w": Tensor()}, {"0": np.arange(4, dtype=">f4").tobytes()}, byteorder=b"big"
    )
    np.testing.assert_array_equal(pth.load_pth(big)["w"], [0, 1, 2, 3])
    two = tmp_path / "two.pth"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a/data.pkl", pickled({}))
        z.writestr("b/data.pkl", pickled({}))
    refused(two, "expected one '<name>/data.pkl' record in the archive, found 2")
    (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}))
    refused(tmp_path / "legacy.pth", "not a PyTorch zip checkpoint")


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    for bad in (np.nan, np.inf):
        sd = {
            "encoder.head.0.weight": np.ones((2, 3), np.float32),
            "imnet.layers.0.bias": np.array([1, bad], np.float32),
        }
        pth.save_pth(tmp_path / "nan.pth", {"model": {"name": "liif", "args": {}, "sd": sd}})
        refused(tmp_path / "nan.pth", r"tensor model/sd/imnet.layers.0.bias holds NaN or Inf values")
    ints = {"step": np.array([1, 2], np.int64)}  # non-float tensors are not checked for finiteness
    pth.save_pth(tmp_path / "ints.pth", ints)
    assert pth.load_pth(tmp_path / "ints.pth")["step"].tolist() == [1, 2]


def test_refusals_are_value_errors_and_the_unsafe_one_is_a_checkpoint_error():
    assert issubclass(CheckpointError, ValueError)
    assert issubclass(pth.UnsafeCheckpointError, CheckpointError)
    assert issubclass(state_dict.CheckpointMismatchError, CheckpointError)


def test_hostile_model_specs_are_refused_before_any_module_is_built(tmp_path):
    enc = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 10**7}}
    pth.save_pth(tmp_path / "spec.pth", {"model": {"name": "liif", "args": {"encoder_spec": enc}, "sd": {}}})
    start = time.perf_counter()
    with pytest.raises(
        CheckpointError,
        match=r"spec\.pth: model spec\.args\.encoder_spec\.args\.n_resblocks must be an "
        r"integer in \[1, 256\], got 10000000",
    ):
        state_dict.load_official(tmp_path / "spec.pth")
    assert time.perf_counter() - start < 2
    pth.save_pth(tmp_path / "sd.pth", {"model": {"name": "liif", "args": {"encoder_spec": {"name": "rdn"}}, "sd": [1]}})
    with pytest.raises(CheckpointError, match="model.sd is not a state dict"):
        state_dict.load_official(tmp_path / "sd.pth")


FUZZ = r"""
import json, random, sys, time, zipfile, io, resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import numpy as np
from liif_jax.formats import pth

src, n = sys.argv[1], int(sys.argv[2])
clean = pth.load_pth(src)
data = open(src, "rb").read()
with zipfile.ZipFile(src) as z:
    infos = z.infolist()
    members = {i.filename: z.read(i) for i in infos}
headers = [range(i.header_offset, i.header_offset + 30 + len(i.filename)) for i in infos]
central = range(data.index(b"PK\x01\x02"), len(data))

def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b

def rezip(pkl):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, content in members.items():
            z.writestr(name, pkl if name.endswith("data.pkl") else content)
    return out.getvalue()

rng = random.Random(0)
counts = {"identical": 0, "refused": 0, "loaded_edited_pickle": 0}
slowest, start = 0.0, time.perf_counter()
for i in range(n):
    kind = ["flip", "truncate", "header", "pickle"][i % 4]
    mutated = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    elif kind == "truncate":
        mutated = mutated[: rng.randrange(len(mutated))]
    elif kind == "header":
        region = rng.choice(headers + [central])
        for _ in range(rng.randint(1, 3)):
            mutated[rng.choice(region)] = rng.randrange(256)
    else:
        pkl = bytearray(members["archive/data.pkl"])
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(pkl))
            op = rng.randrange(3)
            if op == 0:
                pkl[at] = rng.randrange(256)
            elif op == 1:
                del pkl[at]
            else:
                pkl.insert(at, rng.randrange(256))
        mutated = bytearray(rezip(bytes(pkl)))
    path = f"{src}.{i}"
    open(path, "wb").write(mutated)
    t = time.perf_counter()
    try:
        got = pth.load_pth(path)
    except pth.CheckpointError as err:
        assert str(err).startswith(path + ": ") and "\n" not in str(err), (kind, str(err))
        counts["refused"] += 1
    else:
        if same(clean, got):
            counts["identical"] += 1
        else:
            assert kind == "pickle", (i, kind)  # only a re-zipped pickle edit can change what loads
            counts["loaded_edited_pickle"] += 1
    slowest = max(slowest, time.perf_counter() - t)
print(json.dumps({**counts, "slowest_s": slowest, "total_s": time.perf_counter() - start}))
"""


def test_fuzzed_checkpoints_load_identically_or_are_refused(tmp_path):
    """Random byte flips, truncations, zip header and pickle edits of a small valid checkpoint: each
    loads the same weights or raises CheckpointError; never another exception, a crash (run in a
    child process under a 3 GB address-space limit) or a hang."""
    rng = np.random.default_rng(0)
    sd = collections.OrderedDict(
        (f"layer.{i}.weight", rng.standard_normal((4, 3)).astype(np.float32)) for i in range(3)
    )
    sd["layer.0.bias"] = np.arange(4, dtype=np.float16)
    sd["scalar"] = np.full((), 1.5, np.float32)
    pth.save_pth(
        tmp_path / "clean.pth",
        {
            "model": {"name": "liif", "args": {"hidden_list": [16, 16]}, "sd": sd},
            "epoch": 3,
            "shared": [sd["layer.1.weight"]],
        },
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, str(tmp_path / "clean.pth"), "400"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["refused"] > 100 and summary["identical"] > 10, summary
    assert summary["slowest_s"] < 2 and summary["total_s"] < 30, summary
