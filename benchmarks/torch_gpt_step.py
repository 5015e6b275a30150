"""PyTorch eager reference for one training step of the small GPT (the same model, data shapes
and step as benchmarks/gpt-step.ts): 6 pre-LN layers, d_model 512, 8 heads, sequence 256,
vocabulary 200, tanh GELU, untied head, cross entropy, gradient clipping at norm 1, AdamW.
fp32 with TF32 off (torch's default 'highest'), device-timed with CUDA events, median of steps
after warm-up. What a PyTorch user runs on an H100 instead (issue 26's goal 2): `--autocast bf16`
(torch.autocast), `--sdpa` (F.scaled_dot_product_attention, the flash kernel, instead of the
attention written out), `--compile` (torch.compile of the model) and `--fused` (fused AdamW).

    python3 benchmarks/torch_gpt_step.py [--batch 32] [--steps 20] [--precision highest]
      [--autocast bf16] [--sdpa] [--compile] [--fused]
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_timing import median_ms


class Block(nn.Module):
    def __init__(self, d, heads, sdpa=False):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.ln1 = nn.LayerNorm(d)
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def attention(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        if self.sdpa:
            return self.output(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        # Written out as sparsegrad computes it (no fused attention kernel), for a like-for-like step.
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), 1)
        scores = scores.masked_fill(mask, -1e9)
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.output(context)

    def forward(self, x):
        h = x + self.attention(self.ln1(x))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, seq, d, heads, layers, sdpa=False):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.layers = nn.ModuleList(Block(d, heads, sdpa) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--precision", default="highest", choices=["highest", "high", "medium"])
    p.add_argument("--autocast", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--sdpa", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--fused", action="store_true")
    a = p.parse_args()
    torch.set_float32_matmul_precision(a.precision)
    torch.manual_seed(0)
    dev = "cuda"
    vocab, seq = 200, 256
    model = GPT(vocab, seq, 512, 8, 6, sdpa=a.sdpa).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=a.fused)
    forward = torch.compile(model) if a.compile else model
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.autocast)
    scaler = torch.amp.GradScaler("cuda", enabled=low == torch.float16)
    tokens = torch.arange(a.batch * (seq + 1), device=dev).mul(7919).remainder(vocab).view(a.batch, seq + 1)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        with torch.autocast(device_type="cuda", dtype=low or torch.float32, enabled=low is not None):
            loss = F.cross_entropy(forward(x).view(-1, vocab).float(), y.view(-1))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    ms = median_ms(step, a.steps, warmup=10 if a.compile else 5)
    setup = f"precision {a.precision}, autocast {a.autocast}" + "".join(f", {f}" for f in ("sdpa", "compile", "fused") if getattr(a, f))
    print(f"torch {torch.__version__} {torch.cuda.get_device_name()} {setup}: "
          f"{ms:.2f} ms/step (median of {a.steps}), batch {a.batch}x{seq}, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
