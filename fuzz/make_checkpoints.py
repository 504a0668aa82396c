#!/usr/bin/env python3
"""Small checkpoints in the three containers the quantizer reads, written without torch.

The fuzzer's seeds (`fuzz/seeds.sh`): the fixtures' checkpoints are 2 MB each, too big for a
fuzzer to mutate quickly, so these hold the same structures around a few tiny tensors: a torch
zip file, a torch legacy file, a safetensors file, and an mmcls-style zip with `meta`. The pickles
are what `torch.save` writes (protocol 2, `_rebuild_tensor_v2`, persistent ids for storages);
stand-in `torch` modules make Python's pickler emit the same globals.

With --hostile, it writes instead the hostile files of the quantizer's tests
(tests/fixtures/hostile/): pickles that call os.system, tensors whose shapes claim far more
data than the file holds, a zip entry that claims 4 GB, a safetensors header that lies.

Usage: make_checkpoints.py [--hostile] OUT_DIR
"""
import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"


def _rebuild_tensor_v2(*args):
    raise RuntimeError("only pickled, never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, values):
        self.key, self.values = key, values


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        return (_rebuild_tensor_v2,
                (self.storage, 0, self.shape, tuple(stride), False, collections.OrderedDict()))


def tensors():
    shapes = {"conv1.weight": (2, 3, 1, 1), "bn1.running_mean": (2,),
              "bn1.num_batches_tracked": (), "fc.weight": (3, 2), "fc.bias": (3,)}
    out = collections.OrderedDict()
    for i, (name, shape) in enumerate(shapes.items()):
        n = 1
        for d in shape:
            n *= d
        out[name] = Tensor(Storage(str(i), [0.25 * (i + j) for j in range(n)]), shape)
    return out


def pickled(obj, persistent_id):
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)
    p.persistent_id = persistent_id
    p.dump(obj)
    return buf.getvalue()


def storages(obj):
    found = {}

    def walk(o):
        if isinstance(o, Tensor):
            found[o.storage.key] = o.storage
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
    walk(obj)
    return found


def floats(values):
    return struct.pack(f"<{len(values)}f", *values)


def torch_zip(obj, path):
    def pid(o):
        if isinstance(o, Storage):
            return ("storage", FloatStorage, o.key, "cpu", len(o.values))
        return None
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled(obj, pid))
        z.writestr("archive/byteorder", "little")
        for key, s in storages(obj).items():
            z.writestr(f"archive/data/{key}", floats(s.values))
        z.writestr("archive/version", "3\n")


def torch_legacy(obj, path):
    def pid(o):
        if isinstance(o, Storage):
            return ("storage", FloatStorage, o.key, "cpu", len(o.values), None)
        return None
    found = storages(obj)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            f.write(pickle.dumps(header, protocol=2))
        f.write(pickled(obj, pid))
        f.write(pickle.dumps(sorted(found), protocol=2))
        for key in sorted(found):
            values = found[key].values
            f.write(struct.pack("<q", len(values)))
            f.write(floats(values))


def safetensors(obj, path):
    header, data = {}, b""
    for name, t in obj.items():
        raw = floats(t.storage.values)
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + data)


def main(out):
    t = tensors()
    torch_zip(t, f"{out}/tiny_zip.pth")
    torch_legacy(t, f"{out}/tiny_legacy.pth")
    safetensors(t, f"{out}/tiny.safetensors")
    mm = {"meta": {"CLASSES": ["a", "b", "c"], "epoch": 1},
          "state_dict": collections.OrderedDict(("backbone." + k, v) for k, v in t.items())}
    torch_zip(mm, f"{out}/tiny_mmcls.pth")


class System:
    """Unpickling this calls os.system: what a hostile checkpoint does."""

    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/resnext-edge-pwned",))


def hostile(out):
    t = tensors()
    evil = collections.OrderedDict(t)
    evil["fc.extra"] = System()
    torch_zip(evil, f"{out}/os_system_zip.pth")
    torch_legacy(evil, f"{out}/os_system_legacy.pth")
    huge = collections.OrderedDict(t)
    huge["fc.weight"] = Tensor(huge["fc.weight"].storage, (1 << 20, 1 << 20))
    torch_zip(huge, f"{out}/huge_shape_zip.pth")
    torch_legacy(huge, f"{out}/huge_shape_legacy.pth")
    # A deflated entry whose declared size (local header and central directory) says 4 GB.
    name = b"archive/data/0"
    with zipfile.ZipFile(f"{out}/zip_bomb.pth", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr(name.decode(), b"\0" * (1 << 20))
    raw = bytearray(open(f"{out}/zip_bomb.pth", "rb").read())
    claimed = struct.pack("<I", 0xF0000000)
    local = raw.find(name) - 30
    assert raw[local:local + 4] == b"PK\x03\x04"
    raw[local + 22:local + 26] = claimed
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46:central + 46 + name_len] == name:
            raw[central + 24:central + 28] = claimed
        central = raw.find(b"PK\x01\x02", central + 4)
    open(f"{out}/zip_bomb.pth", "wb").write(bytes(raw))
    # A safetensors header whose tensor claims [2^20, 2^20] over 8 bytes of data.
    head = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                     "data_offsets": [0, 8]}}).encode()
    head += b" " * (-len(head) % 8)
    open(f"{out}/huge_shape.safetensors", "wb").write(struct.pack("<Q", len(head)) + head + b"\0" * 8)


if __name__ == "__main__":
    if sys.argv[1] == "--hostile":
        hostile(sys.argv[2])
    else:
        main(sys.argv[1])
