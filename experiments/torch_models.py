"""PyTorch references of the two text systems, written from the specs (the
originals' code is not available here): what a user switching to tinyjax
would otherwise run. Used by experiments/torch_reference.py and its test.

  TinyLLM  tiny-llm v1 as its train.py is structured (../shared/specs/
           tiny-llm-peek.md section 3): 4 separate Head modules per block,
           each with its own key/query/value Linear(128 -> 32, bias=False) and
           tril buffer, concatenated, then proj; torch default init;
           AdamW(lr=3e-4) with torch's defaults; 824,897 parameters.
  GuppyLM  arman-bd/guppylm's model (../shared/specs/guppylm.md section 4):
           fused qkv Linear with bias, 6 heads of 64, ReLU FFN 768, dropout
           0.1 (embeddings, attention weights, FFN output), head tied to the
           token embedding, N(0, 0.02) init; AdamW betas (0.9, 0.95), weight
           decay 0.1, warmup 200 then cosine to 3e-5, clip 1.0; batches of 32
           rows right-padded to the batch's longest row (the original collate),
           loss on every non-pad target; 8,726,016 parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


# ----------------------------------------------------------------- tiny-llm ---
class Head(nn.Module):

  def __init__(self, n_embd, head_size, block_size):
    super().__init__()
    self.key = nn.Linear(n_embd, head_size, bias=False)
    self.query = nn.Linear(n_embd, head_size, bias=False)
    self.value = nn.Linear(n_embd, head_size, bias=False)
    self.register_buffer('tril', torch.tril(torch.ones(block_size, block_size)))

  def forward(self, x):
    _, t, _ = x.shape
    k = self.key(x)
    q = self.query(x)
    wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
    wei = wei.masked_fill(self.tril[:t, :t] == 0, float('-inf'))
    wei = F.softmax(wei, dim=-1)
    return wei @ self.value(x)


class MultiHeadAttention(nn.Module):

  def __init__(self, n_embd, n_head, block_size):
    super().__init__()
    self.heads = nn.ModuleList([Head(n_embd, n_embd // n_head, block_size)
                                for _ in range(n_head)])
    self.proj = nn.Linear(n_embd, n_embd)

  def forward(self, x):
    return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


class TinyBlock(nn.Module):

  def __init__(self, n_embd, n_head, block_size):
    super().__init__()
    self.attn = MultiHeadAttention(n_embd, n_head, block_size)
    self.ffwd = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.ReLU(),
                              nn.Linear(4 * n_embd, n_embd))
    self.ln1 = nn.LayerNorm(n_embd)
    self.ln2 = nn.LayerNorm(n_embd)

  def forward(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.ffwd(self.ln2(x))


class TinyLLM(nn.Module):

  def __init__(self, vocab_size=65, n_embd=128, n_head=4, n_layer=4, block_size=128):
    super().__init__()
    self.tok_emb = nn.Embedding(vocab_size, n_embd)
    self.pos_emb = nn.Embedding(block_size, n_embd)
    self.blocks = nn.Sequential(*[TinyBlock(n_embd, n_head, block_size) for _ in range(n_layer)])
    self.ln_f = nn.LayerNorm(n_embd)
    self.lm_head = nn.Linear(n_embd, vocab_size)

  def forward(self, idx, targets=None):
    b, t = idx.shape
    x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
    logits = self.lm_head(self.ln_f(self.blocks(x)))
    if targets is None:
      return logits, None
    return logits, F.cross_entropy(logits.view(b * t, -1), targets.view(b * t))


def tiny_llm_get_batch(data, batch_size=32, block_size=128, generator=None):
  """train.py's get_batch: random starts, x = data[i:i+T], y = data[i+1:i+T+1]."""
  ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
  x = torch.stack([data[i:i + block_size] for i in ix])
  y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
  return x, y


def tiny_llm_trainer(data, seed=0):
  """(step(), model, optimizer): one train.py iteration per step() call
  (get_batch, forward, zero_grad, backward, AdamW step)."""
  torch.manual_seed(seed)
  model = TinyLLM()
  opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
  gen = torch.Generator().manual_seed(seed)

  def step():
    xb, yb = tiny_llm_get_batch(data, generator=gen)
    _, loss = model(xb, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()
  return step, model, opt


# ------------------------------------------------------------------ GuppyLM ---
class GuppyAttention(nn.Module):

  def __init__(self, d, n_heads, dropout):
    super().__init__()
    self.n_heads = n_heads
    self.qkv = nn.Linear(d, 3 * d)
    self.out = nn.Linear(d, d)
    self.drop = nn.Dropout(dropout)

  def forward(self, x):
    b, t, d = x.shape
    hd = d // self.n_heads
    q, k, v = self.qkv(x).split(d, dim=-1)
    q, k, v = (z.view(b, t, self.n_heads, hd).transpose(1, 2) for z in (q, k, v))
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
    att = att.masked_fill(~causal, float('-inf'))
    att = self.drop(F.softmax(att, dim=-1))
    y = (att @ v).transpose(1, 2).contiguous().view(b, t, d)
    return self.out(y)


class GuppyFFN(nn.Module):

  def __init__(self, d, d_ff, dropout):
    super().__init__()
    self.up = nn.Linear(d, d_ff)
    self.down = nn.Linear(d_ff, d)
    self.drop = nn.Dropout(dropout)

  def forward(self, x):
    return self.drop(self.down(F.relu(self.up(x))))


class GuppyBlock(nn.Module):

  def __init__(self, d, n_heads, d_ff, dropout):
    super().__init__()
    self.norm1 = nn.LayerNorm(d)
    self.attn = GuppyAttention(d, n_heads, dropout)
    self.norm2 = nn.LayerNorm(d)
    self.ffn = GuppyFFN(d, d_ff, dropout)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.ffn(self.norm2(x))


class GuppyLM(nn.Module):

  def __init__(self, vocab_size=4096, d=384, n_layers=6, n_heads=6, d_ff=768, max_len=128,
               dropout=0.1):
    super().__init__()
    self.tok_emb = nn.Embedding(vocab_size, d)
    self.pos_emb = nn.Embedding(max_len, d)
    self.drop = nn.Dropout(dropout)
    self.blocks = nn.ModuleList([GuppyBlock(d, n_heads, d_ff, dropout) for _ in range(n_layers)])
    self.norm = nn.LayerNorm(d)
    self.lm_head = nn.Linear(d, vocab_size, bias=False)
    self.lm_head.weight = self.tok_emb.weight  # tied
    for m in self.modules():
      if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, 'bias', None) is not None:
          nn.init.zeros_(m.bias)

  def forward(self, idx, targets=None):
    _, t = idx.shape
    x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device)))
    for block in self.blocks:
      x = block(x)
    logits = self.lm_head(self.norm(x))
    if targets is None:
      return logits, None
    return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=0)


def guppy_lr(step):
  """The original's schedule: linear warmup over 200 steps, then cosine to 3e-5."""
  if step < 200:
    return 3e-4 * step / 200
  return 3e-5 + 2.7e-4 * 0.5 * (1 + math.cos(math.pi * (step - 200) / 9800))


def guppy_trainer(x_NxT, y_NxT, mask_NxT, seed=42, batch_size=32):
  """(step(), model, optimizer) over the rows of a tinyjax chat split: each
  step takes batch_size random rows and cuts them to the batch's longest row
  (what the original's collate pads to), AdamW + clip 1.0 + the schedule."""
  torch.manual_seed(seed)
  model = GuppyLM()
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                          weight_decay=0.1)
  x_all, y_all = torch.as_tensor(x_NxT).long(), torch.as_tensor(y_NxT).long()
  lens = torch.as_tensor(mask_NxT).sum(1).long()
  gen = torch.Generator().manual_seed(seed)
  state = {'step': 0, 'positions': 0}

  def step():
    idx = torch.randint(len(x_all), (batch_size,), generator=gen)
    t = int(lens[idx].max())
    xb, yb = x_all[idx, :t], y_all[idx, :t]
    for g in opt.param_groups:
      g['lr'] = guppy_lr(state['step'])
    _, loss = model(xb, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    state['step'] += 1
    state['positions'] += batch_size * t
    return loss.detach()
  return step, model, opt, state
