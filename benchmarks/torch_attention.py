"""PyTorch reference for benchmarks/attention.ts: F.scaled_dot_product_attention forward +
backward (the flash backend) on the same shapes, CUDA-event timed, median of repeats after warm-up.

    python3 benchmarks/torch_attention.py [--batch 32] [--heads 8] [--seqs 256,1024] [--d 64] [--dtype bfloat16] [--causal 1]
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch_timing import median_ms

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=32)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--seqs", default="256,1024")
p.add_argument("--d", type=int, default=64)
p.add_argument("--dtype", default="bfloat16")
p.add_argument("--causal", type=int, default=1)
p.add_argument("--repeats", type=int, default=20)
a = p.parse_args()
dtype = getattr(torch, a.dtype)
print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; {a.dtype}, B {a.batch}, {a.heads} heads, d {a.d}{', causal' if a.causal else ''}")
print("| T | torch flash ms (fwd + bwd) |")
print("| --- | --- |")
for t in map(int, a.seqs.split(",")):
    q, k, v = (torch.randn(a.batch, a.heads, t, a.d, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn(a.batch, a.heads, t, a.d, device="cuda", dtype=dtype)

    def run():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal)).backward(dout)
        q.grad = k.grad = v.grad = None

    print(f"| {t} | {median_ms(run, a.repeats):.3f} |")
