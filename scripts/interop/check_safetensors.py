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
print(f"torch {torch.__version__}")
