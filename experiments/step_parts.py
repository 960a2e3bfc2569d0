"""tiny-llm's training step part by part: tinyjax (XLA:CPU) against PyTorch.

  python experiments/step_parts.py [--repeats 7] [--calls 20]
      [--out experiments/results/step_parts.json]

Needs torch (requirements-interop.txt). Where does the 1.2x between tinyjax's
tiny-llm step and the PyTorch original's go (docs/benchmarks.md, "Against the
PyTorch originals")? Each part of the step is timed alone, forward and
backward, at tiny-llm's shapes (32 x 128 positions, d 128, 4 heads of 32, MLP
512, vocabulary 65), in this one process, interleaved (the tinyjax part, then
the torch part, `--repeats` rounds of `--calls` calls; medians of wall ms a
call), torch eager with 2 threads:

  layernorm    tinyjax.model.Norm('layernorm')  | F.layer_norm
  linear       tinyjax.model's Linear 128 -> 128, no bias (its q, k, v; o
               has a bias)                       | nn.Linear(128, 128,
                                                   bias=False): the same
                                                   product (the original
                                                   runs q, k, v as twelve
                                                   Linear(128, 32) a layer)
  mlp          tinyjax.model.MLP (128 -> 512, relu, -> 128)
                                                 | the original's ffwd
  attention    tinyjax.model.Attention with its q/k/v/o projections removed:
               the scores, causal mask, softmax and the weighted sum of all
               heads in one einsum each
                                                 | the original's 4 Head
                                                   modules' q @ k.T,
                                                   masked_fill, softmax, @ v
  head+ce      the unembedding 128 -> 65 and the cross-entropy
  adamw        one AdamW update of the 824,897 parameters (optax | torch.optim)
  whole step   a step of the whole model in plain JAX: value_and_grad +
               optax in a scan of 10, no instrument | the original's forward,
               backward, AdamW; the same 32 x 128 windows every call
  tinyjax step configs/tiny_llm.py's compiled chunk as tinyjax.train runs it
               (batches drawn in the program, vmapped over the one run, a
               metric row every 10 steps, the divergence check) | the same
               torch step

A part's gap a step is its time difference x how often a step runs it (9
norms, 16 linears, 4 MLPs and attentions, 1 head, 1 update). Read the parts
as which kernels XLA:CPU runs slower than torch's, not as shares of the step:
alone, each part is compiled apart from its neighbours (other layouts and
fusions than inside the step), and the torch parts are not the original's
step either (its q, k, v are per-head Linears), so neither side's parts add
up to its step. "whole step" against "tinyjax step" is the instrument's own
cost; "whole step" against torch is XLA:CPU's kernels against torch's.
Every torch part sets its gradients to None first, as a training step does.
Writes one JSON (--out) and prints the table docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

B, T, D, H, F_, V = 32, 128, 128, 4, 512, 65
# How many times one tiny-llm step runs each part (4 layers).
PER_STEP = {'layernorm': 9, 'linear': 16, 'mlp': 4, 'attention': 4, 'head+ce': 1, 'adamw': 1}
WHOLE = ['whole step', 'tinyjax step']


def jax_parts():
  """{part: a zero-argument callable that runs it once and waits}."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from configs import tiny_llm
  from tinyjax import model as M
  cfg = tiny_llm.get_config().model
  k = jax.random.split(jax.random.key(0), 6)
  x = jax.random.normal(k[0], (B, T, D))
  g = jax.random.normal(k[1], (B, T, D))
  y = jax.random.randint(k[2], (B, T), 0, V)

  def part(module, loss):
    gd, p = nnx.split(module)
    fn = jax.jit(jax.grad(lambda p, x: loss(nnx.merge(gd, p), x), (0, 1)))
    return lambda: jax.block_until_ready(fn(p, x))

  out = {
      'layernorm': part(M.Norm('layernorm', D, 1e-5, rngs=nnx.Rngs(0)),
                        lambda m, x: jnp.vdot(m(x), g)),
      'linear': part(M._dense(D, D, False, cfg, nnx.Rngs(0)), lambda m, x: jnp.vdot(m(x), g)),
      'mlp': part(M.MLP(cfg, rngs=nnx.Rngs(0)), lambda m, x: jnp.vdot(m(x), g)),
  }
  # The attention core as tinyjax.model.Attention computes it, q/k/v given.
  attn = M.Attention(cfg, rngs=nnx.Rngs(0))
  ident = lambda t: t
  attn.q = attn.k = attn.v = attn.o = ident
  gd, p = nnx.split(attn)
  core = jax.jit(jax.grad(lambda x: jnp.vdot(nnx.merge(gd, p)(x)[0], g)))
  out['attention'] = lambda: jax.block_until_ready(core(x))
  head = M._dense(D, V, True, cfg, nnx.Rngs(0))
  out['head+ce'] = part(head, lambda m, x: optax.softmax_cross_entropy_with_integer_labels(
      m(x), y).mean())
  model = M.build(cfg, V, T, nnx.Rngs(0))
  gdm, params = nnx.split(model)
  tx = optax.adamw(3e-4, weight_decay=0.01)
  opt = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  upd = jax.jit(lambda p, o: optax.apply_updates(p, tx.update(grads, o, p)[0]))
  out['adamw'] = lambda: jax.block_until_ready(upd(params, opt))
  tok = jax.random.randint(k[3], (B, T), 0, V)
  ytok = jnp.roll(tok, -1, 1)

  def loss(p):
    logits, _ = nnx.merge(gdm, p)(tok)
    return optax.softmax_cross_entropy_with_integer_labels(logits, ytok).mean()

  def ten(p, o):
    def body(c, _):
      p, o = c
      l, gr = jax.value_and_grad(loss)(p)
      u, o = tx.update(gr, o, p)
      return (optax.apply_updates(p, u), o), l
    return jax.lax.scan(body, (p, o), None, length=10)
  ten = jax.jit(ten)
  out['whole step'] = lambda: jax.block_until_ready(ten(params, opt))
  return out


def tinyjax_chunk():
  """configs/tiny_llm.py's compiled chunk as tinyjax.train runs it (batches
  drawn in the program, vmapped over one run, a metric row every 10 steps,
  the divergence check): a callable that runs 10 steps and waits."""
  import jax
  import step_ab
  compiled, state, hp, data, _ = step_ab.build('configs/tiny_llm.py', 'base', 10, 5001)
  box = {'state': state, 'step': 5001}

  def run():
    box['state'], rows = compiled(box['state'], hp, data, box['step'], 10)
    jax.block_until_ready(rows)
    box['step'] += 10
  return run


def torch_parts():
  import torch
  import torch.nn.functional as F
  import torch_models
  torch.set_num_threads(2)
  torch.manual_seed(0)
  x = torch.randn(B, T, D, requires_grad=True)
  g = torch.randn(B, T, D)
  y = torch.randint(0, V, (B * T,))
  ln = torch.nn.LayerNorm(D)
  lin = torch.nn.Linear(D, D, bias=False)
  mlp = torch.nn.Sequential(torch.nn.Linear(D, F_), torch.nn.ReLU(), torch.nn.Linear(F_, D))
  head = torch.nn.Linear(D, V)
  tril = torch.tril(torch.ones(T, T))
  qkv = [torch.randn(B, T, D // H, requires_grad=True) for _ in range(3 * H)]

  def fresh(*modules):
    """Gradients set to None before a backward (as zero_grad(set_to_none)
    before each step): else every call also adds into the old ones."""
    x.grad = None
    for q in qkv:
      q.grad = None
    for m in modules:
      m.zero_grad(set_to_none=True)

  def fb(module, backward):
    def run():
      fresh(module)
      backward(module(x))
    return run

  def attention():
    fresh()
    outs = []
    for i in range(H):  # the original's Head.forward, q/k/v given
      q, k, v = qkv[3 * i:3 * i + 3]
      wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
      wei = wei.masked_fill(tril[:T, :T] == 0, float('-inf'))
      outs.append(F.softmax(wei, dim=-1) @ v)
    torch.cat(outs, -1).backward(g)

  model = torch_models.TinyLLM()
  opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
  for p in model.parameters():
    p.grad = torch.ones_like(p)
  tok = torch.randint(0, V, (B, T))
  ytok = torch.roll(tok, -1, 1)
  model2 = torch_models.TinyLLM()
  opt2 = torch.optim.AdamW(model2.parameters(), lr=3e-4)

  def whole():
    for _ in range(10):
      _, loss = model2(tok, ytok)
      opt2.zero_grad(set_to_none=True)
      loss.backward()
      opt2.step()

  return {
      'layernorm': fb(ln, lambda out: out.backward(g)),
      'linear': fb(lin, lambda out: out.backward(g)),
      'mlp': fb(mlp, lambda out: out.backward(g)),
      'attention': attention,
      'head+ce': fb(head, lambda out: F.cross_entropy(out.view(-1, V), y).backward()),
      'adamw': opt.step,
      'whole step': whole,
  }


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--repeats', type=int, default=7)
  ap.add_argument('--calls', type=int, default=20)
  ap.add_argument('--out', default='experiments/results/step_parts.json')
  a = ap.parse_args()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  import jax
  import torch
  from torch_reference import Timer, median
  sides = {'tinyjax': jax_parts(), 'torch': torch_parts()}
  sides['tinyjax']['tinyjax step'] = tinyjax_chunk()
  sides['torch']['tinyjax step'] = sides['torch']['whole step']
  for fns in sides.values():  # compile / warm up
    for fn in fns.values():
      fn()
  ms = {s: {p: [] for p in sides[s]} for s in sides}
  other = []
  for _ in range(a.repeats):
    for p in list(PER_STEP) + WHOLE:
      for s, fns in sides.items():
        if s == 'torch' and p == 'tinyjax step':
          continue  # the torch step is timed once a round, as 'whole step'
        calls = max(2, a.calls // 10) if p in WHOLE else a.calls
        with Timer() as t:
          for _ in range(calls):
            fns[p]()
        per = 10 if p in WHOLE else 1  # a whole-step call runs 10 steps
        ms[s][p].append(t.wall / calls / per * 1e3)
        other.append(t.other)
  rows = {}
  ms['torch'].pop('tinyjax step')
  for p in list(PER_STEP) + WHOLE:
    j, t = median(ms['tinyjax'][p]), median(ms['torch'][p if p in ms['torch'] else 'whole step'])
    n = PER_STEP.get(p, 1)
    rows[p] = {'tinyjax_ms': round(j, 3), 'torch_ms': round(t, 3), 'ratio': round(j / t, 3),
               'per_step': n, 'tinyjax_ms_step': round(j * n, 2),
               'torch_ms_step': round(t * n, 2), 'gap_ms_step': round((j - t) * n, 2)}
  out = {'command': 'python ' + ' '.join(sys.argv), 'date': time.strftime('%Y-%m-%d %H:%M'),
         'machine': platform.platform(), 'processor': platform.processor(),
         'cpu_count': os.cpu_count(), 'jax': jax.__version__, 'torch': torch.__version__,
         'repeats': a.repeats, 'calls': a.calls,
         'other_cores_max': round(max(o for o in other if o is not None), 3) if any(
             o is not None for o in other) else None,
         'loadavg_end': os.getloadavg(), 'parts': rows, 'all_ms': ms}
  with open(a.out, 'w') as f:
    json.dump(out, f, indent=1)
  print(table(out))


def table(out):
  lines = ['| part | per step | tinyjax ms | torch ms | ratio | gap, ms a step |',
           '|---|---|---|---|---|---|']
  for p, r in out['parts'].items():
    lines.append(f"| {p} | {r['per_step']} | {r['tinyjax_ms']:.2f} | {r['torch_ms']:.2f} | "
                 f"{r['ratio']:.2f}x | {r['gap_ms_step']:+.1f} |")
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
