"""Writes hostile files that duoclip must refuse with a clear message (tests/fixtures/hostile/).

Each is small and made the way an attacker (or a damaged download) would make it:

pickle_os_system.pt   torch.save of a state dict whose "meta" entry pickles a call to
                      os.system("touch duoclip-pwned-os-system") (protocol 2, GLOBAL opcode).
pickle_import.pt      the same with subprocess.call(["touch", "duoclip-pwned-import"])
                      (protocol 4, STACK_GLOBAL): loading imports `subprocess` and runs it.
                      Both payloads are checked here to really run under
                      torch.load(weights_only=False): they create their marker file in the
                      current folder. tests/hostile.rs asserts that duoclip creates no marker.
zip_traversal.pt      a valid tiny torch state dict zip plus an entry named
                      "../../duoclip-traversal.txt".
huge_header.safetensors    header length field = 2**40 bytes, file a few bytes long.
huge_tensor.safetensors    one F32 tensor of shape [2**20, 2**18] (2**40 bytes claimed by its
                      shape and data_offsets), 16 real bytes.
overlap.safetensors   two tensors whose data_offsets overlap ([0, 16] and [8, 24]).
nan_weights.safetensors / inf_weights.safetensors
                      a tiny vision-only OpenCLIP ViT (width 8, one block, 1 head) with one
                      NaN in visual.transformer.resblocks.0.mlp.c_fc.weight, resp. one +Inf in
                      visual.proj.
bomb.png / bomb.jpg   a valid PNG header (correct CRC) and a real JPEG whose SOF0 frame claims
                      60000 x 60000 pixels; a few bytes of pixel data.

Also writes the checkpoint seeds of the fuzz targets (tests/fixtures/fuzz/): the same tiny
vision-only ViT, finite, as safetensors (f16) and as a torch zip.

File names with `../` or a newline are not committed (git on some systems cannot hold a
newline in a name): tests/hostile.rs copies a fixture image to such names itself.
"""
import io
import json
import os
import pathlib
import struct
import subprocess
import tempfile
import zipfile
import zlib

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUT = FIXTURES / "hostile"
SEEDS = FIXTURES / "fuzz"


class OsSystem:
    def __reduce__(self):
        return (os.system, ("touch duoclip-pwned-os-system",))


class ImportAndRun:
    def __reduce__(self):
        return (subprocess.call, (["touch", "duoclip-pwned-import"],))


def tiny_state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"visual.class_embedding": torch.randn(8, generator=g)}


def save_pickle_payload(path: pathlib.Path, payload, protocol: int, marker: str):
    state = tiny_state()
    state["meta"] = payload
    torch.save(state, path, pickle_protocol=protocol)
    prove_payload_runs(path, marker)


def prove_payload_runs(path: pathlib.Path, marker: str):
    """The fixture is only a test of anything if torch.load really runs its payload."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            torch.load(path, weights_only=False)
            assert os.path.exists(marker), f"{path.name}: payload did not run"
        finally:
            os.chdir(cwd)


def zip_traversal(path: pathlib.Path):
    buffer = io.BytesIO()
    torch.save(tiny_state(), buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr(zipfile.ZipInfo("../../duoclip-traversal.txt"), b"escaped\n")


def safetensors_raw(header: dict, data: bytes, claimed_len=None) -> bytes:
    text = json.dumps(header).encode()
    length = len(text) if claimed_len is None else claimed_len
    return struct.pack("<Q", length) + text + data


def tiny_vision(bad_key=None, bad_value=0.0) -> dict:
    """A vision-only OpenCLIP ViT: width 8, patch 8, 16 px input (2 x 2 grid), one block."""
    rng = np.random.default_rng(0)
    w, p, g = 8, 8, 2

    def r(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    t = {
        "visual.conv1.weight": r(w, 3, p, p),
        "visual.class_embedding": r(w),
        "visual.positional_embedding": r(1 + g * g, w),
        "visual.ln_pre.weight": np.ones(w, np.float32),
        "visual.ln_pre.bias": np.zeros(w, np.float32),
        "visual.ln_post.weight": np.ones(w, np.float32),
        "visual.ln_post.bias": np.zeros(w, np.float32),
        "visual.proj": r(w, 4),
    }
    block = "visual.transformer.resblocks.0."
    for name, shape in [
        ("attn.in_proj_weight", (3 * w, w)),
        ("attn.in_proj_bias", (3 * w,)),
        ("attn.out_proj.weight", (w, w)),
        ("attn.out_proj.bias", (w,)),
        ("mlp.c_fc.weight", (4 * w, w)),
        ("mlp.c_fc.bias", (4 * w,)),
        ("mlp.c_proj.weight", (w, 4 * w)),
        ("mlp.c_proj.bias", (w,)),
    ]:
        t[block + name] = r(*shape)
    for ln in ["ln_1", "ln_2"]:
        t[f"{block}{ln}.weight"] = np.ones(w, np.float32)
        t[f"{block}{ln}.bias"] = np.zeros(w, np.float32)
    if bad_key is not None:
        t[bad_key].flat[3] = bad_value
    return t


def fuzz_seeds():
    good = tiny_vision()
    half = {k: v.astype(np.float16) for k, v in good.items()}
    save_file(half, SEEDS / "safetensors_checkpoint" / "seed-tiny-vision.safetensors")
    state = {k: torch.from_numpy(v) for k, v in good.items()}
    torch.save(state, SEEDS / "pytorch_checkpoint" / "seed-tiny-vision.pt")


def png_bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    save_pickle_payload(OUT / "pickle_os_system.pt", OsSystem(), 2, "duoclip-pwned-os-system")
    save_pickle_payload(OUT / "pickle_import.pt", ImportAndRun(), 4, "duoclip-pwned-import")
    zip_traversal(OUT / "zip_traversal.pt")
    (OUT / "huge_header.safetensors").write_bytes(safetensors_raw({}, b"", claimed_len=2**40))
    huge = {"w": {"dtype": "F32", "shape": [2**20, 2**18], "data_offsets": [0, 2**40]}}
    (OUT / "huge_tensor.safetensors").write_bytes(safetensors_raw(huge, b"\0" * 16))
    overlap = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    (OUT / "overlap.safetensors").write_bytes(safetensors_raw(overlap, b"\0" * 24))
    fc = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    save_file(tiny_vision(fc, float("nan")), OUT / "nan_weights.safetensors")
    save_file(tiny_vision("visual.proj", float("inf")), OUT / "inf_weights.safetensors")
    (OUT / "bomb.png").write_bytes(png_bomb())
    (OUT / "bomb.jpg").write_bytes(jpeg_bomb())
    fuzz_seeds()
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:8d}  {f.name}")


if __name__ == "__main__":
    main()
