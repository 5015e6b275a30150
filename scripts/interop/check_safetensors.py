"""Checks that checkpoints written by sparsegrad load in Python's safetensors / PyTorch and mean
the same thing there: shapes, dtypes and contents, and a BlockSparseLinear rebuilt as a dense
torch matrix from its blocks and block coordinates reproduces sparsegrad's output.

    python3 scripts/interop/check_safetensors.py DIR   (DIR from write-checkpoint.ts)
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

d = sys.argv[1] if len(sys.argv) > 1 else ".interop"
exp = json.load(open(f"{d}/expected.json"))

gpt = load_file(f"{d}/gpt.safetensors")
with safe_open(f"{d}/gpt.safetensors", "pt") as f:
    meta = f.metadata()
assert meta["format"] == "pt" and "dModel" in meta["config"], meta
assert set(gpt) == set(exp["shapes"]), set(gpt) ^ set(exp["shapes"])
for k, t in gpt.items():
    assert list(t.shape) == exp["shapes"][k], (k, t.shape)
    want = torch.int32 if k.endswith("blockCoords") else torch.float32
    assert t.dtype == want, (k, t.dtype)
    s = t.double().sum().item()
    assert abs(s - exp["sums"][k]) <= 1e-4 * (1 + abs(s)), (k, s, exp["sums"][k])
print(f"gpt.safetensors: {len(gpt)} tensors, shapes, dtypes and sums match")

layer = load_file(f"{d}/layer.safetensors")
blocks, coords, bias = layer["weight"].double(), layer["blockCoords"], layer["bias"].double()
bs = blocks.shape[1]
w = torch.zeros(96, 64, dtype=torch.float64)
for (r, c), blk in zip(coords.tolist(), blocks):
    w[r * bs:(r + 1) * bs, c * bs:(c + 1) * bs] = blk
x = torch.tensor(exp["x"], dtype=torch.float64).reshape(5, 64)
y = x @ w.T + bias
err = (y.flatten() - torch.tensor(exp["y"], dtype=torch.float64)).abs().max().item()
assert err < 1e-4, err
print(f"layer.safetensors: {blocks.shape[0]} blocks of {bs}x{bs}; dense torch reconstruction matches sparsegrad's output (max abs error {err:.2e})")
half = load_file(f"{d}/half.safetensors")
assert half["b"].dtype == torch.bfloat16 and half["h"].dtype == torch.float16, (half["b"].dtype, half["h"].dtype)
src = torch.tensor(exp["halfValues"], dtype=torch.float64)
for key, dtype in (("b", torch.bfloat16), ("h", torch.float16)):
    # sparsegrad rounded float64 -> float32 -> 16 bits; torch rounds the same float32 values.
    want = src.float().to(dtype)
    assert torch.equal(half[key], want), (key, half[key], want)
    assert half[key].float().tolist() == exp["halfRead"][key], (key, half[key].float().tolist(), exp["halfRead"][key])
print("half.safetensors: BF16 and F16 tensors load as torch.bfloat16 / float16 with torch's own rounding")
# A file torch writes, for read-torch-half.ts to read back.
from safetensors.torch import save_file
values = torch.linspace(-3, 3, 13, dtype=torch.float32) / 7
save_file({"b": values.to(torch.bfloat16), "h": values.to(torch.float16)}, f"{d}/torch_half.safetensors")
json.dump({"b": values.to(torch.bfloat16).float().tolist(), "h": values.to(torch.float16).float().tolist()}, open(f"{d}/torch_half.json", "w"))
print(f"torch {torch.__version__}")
