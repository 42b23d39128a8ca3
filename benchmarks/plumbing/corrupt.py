"""Flip one byte inside a tensor's bytes of a checkpoint; does loading notice?"""
import shutil, sys, torch
from safetensors.torch import load_file
def flip(src, dst, needle_tensor_bytes):
    b = bytearray(open(src, 'rb').read()); i = b.find(needle_tensor_bytes)
    assert i >= 0; b[i + 1] ^= 0x01; open(dst, 'wb').write(b); return i
# the first conv weight of the checkpoint as raw bytes: locate it in the file and flip a bit
for src, kind in [("ck/plain.pt", "torch"), ("ck/fabric.pt", "torch"), ("ck/accelerate/model.safetensors", "st")]:
    sd = torch.load(src, weights_only=True)["model"] if kind == "torch" else load_file(src)
    w = sd["0.weight"].contiguous().numpy().tobytes()[:16]
    dst = src + ".flipped"; flip(src, dst, w)
    try:
        sd2 = torch.load(dst, weights_only=True)["model"] if kind == "torch" else load_file(dst)
        print(src, "loads after a 1-bit flip; weights equal:", torch.equal(sd["0.weight"], sd2["0.weight"]))
    except Exception as e:
        print(src, "load fails:", type(e).__name__, str(e)[:100])
    # truncation
    b = open(src, 'rb').read(); open(dst, 'wb').write(b[: len(b) // 2])
    try:
        torch.load(dst, weights_only=True) if kind == "torch" else load_file(dst); print(src, "truncated: loads")
    except Exception as e:
        print(src, "truncated: load fails:", type(e).__name__, str(e)[:80])
