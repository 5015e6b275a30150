"""PyTorch eager reference for one training step of the small GPT (the same model, data shapes
and step as benchmarks/gpt-step.ts): 6 pre-LN layers, d_model 512, 8 heads, sequence 256,
vocabulary 200, tanh GELU, untied head, cross entropy, gradient clipping at norm 1, AdamW.
fp32 with TF32 off (torch's default 'highest'), device-timed with CUDA events, median of steps
after warm-up.

    python3 benchmarks/torch_gpt_step.py [--batch 32] [--steps 20] [--precision highest]
"""
import argparse
import math
import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def attention(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
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
    def __init__(self, vocab, seq, d, heads, layers):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.layers = nn.ModuleList(Block(d, heads) for _ in range(layers))
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
    a = p.parse_args()
    torch.set_float32_matmul_precision(a.precision)
    torch.manual_seed(0)
    dev = "cuda"
    vocab, seq = 200, 256
    model = GPT(vocab, seq, 512, 8, 6).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.arange(a.batch * (seq + 1), device=dev).mul(7919).remainder(vocab).view(a.batch, seq + 1)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        loss = F.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        step()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    print(f"torch {torch.__version__} {torch.cuda.get_device_name()} precision {a.precision}: "
          f"{statistics.median(times):.2f} ms/step (median of {a.steps}), batch {a.batch}x{seq}, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
