"""A/B of training-step variants in one process, interleaved, CPU seconds.

  python experiments/step_ab.py [--config configs/tiny_llm.py] [--variants base,x]
      [--repeats 5] [--log_every 50] [--start 5001]

  (what docs/benchmarks.md reports: taskset -c 1 python experiments/step_ab.py
   --variants base,headmajor,qscale,perhead,dpa,vec512 --repeats 5 --log_every 10)

Each variant is a context manager (VARIANTS below) entered while the config's
Program is built and its chunk compiled (the same code path tinyjax.train
runs); the compiled chunks then run in turn, `--repeats` rounds, each timed in
process CPU seconds a step (on a loaded machine wall time mostly measures the
other jobs). All variants start from the same state; the first chunk's metric
rows of the second chunk (after log_every updates) are compared to the first variant's (max abs diff of `loss`), so a
variant that changes the numbers shows it.

This is a development tool: under load its figures are A/B differences, not
benchmarks (experiments/torch_reference.py measures those).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@contextlib.contextmanager
def nothing(config):
  yield config


# ------------------------------------------------- the variants tried ---
# Attention written other ways (each replaces model.Attention.__call__ while
# the chunk is traced); same parameters, same outputs.
def _attention_variants():
  import math
  import jax
  import jax.numpy as jnp
  from tinyjax import model as M
  def call_headmajor(self, x_BxTxD, probs=False, drop=M.OFF):
    b, t, d = x_BxTxD.shape
    h = self.n_heads; k = d // h
    def proj(lin):
      w = lin.kernel[...].reshape(d, h, k)
      y = jnp.einsum('btd,dhk->bhtk', x_BxTxD, w)
      if lin.bias is not None:
        y = y + lin.bias[...].reshape(h, 1, k)
      return y
    q, kk, v = proj(self.q), proj(self.k), proj(self.v)
    s = jnp.einsum('bhtk,bhsk->bhts', q, kk) / math.sqrt(k)
    causal = jnp.tril(jnp.ones((t, t), bool))
    s = jnp.where(causal, s, jnp.finfo(s.dtype).min)
    p = jax.nn.softmax(s, axis=-1)
    out = jnp.einsum('bhts,bhsk->bthk', drop(p), v)
    ps = jax.lax.stop_gradient(p)
    ent = -jnp.sum(jnp.where(causal, ps * jnp.log(jnp.where(ps > 0, ps, 1.0)), 0.0), -1)
    o = self.o(out.reshape(b, t, d))
    o = drop(o) if self.out_dropout else o
    stats = (ent, ps[..., 0])
    return (o, *stats, ps) if probs else (o, *stats)

  def call_qscale(self, x_BxTxD, probs=False, drop=M.OFF):
    b, t, d = x_BxTxD.shape
    h = self.n_heads
    q, kk, v = self._qkv(x_BxTxD)
    s = jnp.einsum('bthk,bshk->bhts', q * (1 / math.sqrt(d // h)), kk)
    causal = jnp.tril(jnp.ones((t, t), bool))
    s = jnp.where(causal, s, jnp.finfo(s.dtype).min)
    p = jax.nn.softmax(s, axis=-1)
    out = jnp.einsum('bhts,bshk->bthk', drop(p), v)
    ps = jax.lax.stop_gradient(p)
    ent = -jnp.sum(jnp.where(causal, ps * jnp.log(jnp.where(ps > 0, ps, 1.0)), 0.0), -1)
    o = self.o(out.reshape(b, t, d))
    o = drop(o) if self.out_dropout else o
    stats = (ent, ps[..., 0])
    return (o, *stats, ps) if probs else (o, *stats)

  def call_perhead(self, x_BxTxD, probs=False, drop=M.OFF):
    b, t, d = x_BxTxD.shape
    h = self.n_heads; k = d // h
    q, kk, v = (f(x_BxTxD) for f in (self.q, self.k, self.v))
    causal = jnp.tril(jnp.ones((t, t), bool))
    outs, ents, firsts, ps_ = [], [], [], []
    for i in range(h):
      sl = slice(i * k, (i + 1) * k)
      s = jnp.einsum('btk,bsk->bts', q[..., sl], kk[..., sl]) / math.sqrt(k)
      s = jnp.where(causal, s, jnp.finfo(s.dtype).min)
      p = jax.nn.softmax(s, axis=-1)
      outs.append(jnp.einsum('bts,bsk->btk', drop(p), v[..., sl]))
      ps = jax.lax.stop_gradient(p)
      ents.append(-jnp.sum(jnp.where(causal, ps * jnp.log(jnp.where(ps > 0, ps, 1.0)), 0.0), -1))
      firsts.append(ps[..., 0]); ps_.append(ps)
    o = self.o(jnp.concatenate(outs, -1))
    o = drop(o) if self.out_dropout else o
    stats = (jnp.stack(ents, 1), jnp.stack(firsts, 1))
    return (o, *stats, jnp.stack(ps_, 1)) if probs else (o, *stats)

  def call_dpa(self, x_BxTxD, probs=False, drop=M.OFF):
    b, t, d = x_BxTxD.shape
    h = self.n_heads
    q, kk, v = self._qkv(x_BxTxD)
    out = jax.nn.dot_product_attention(q, kk, v, is_causal=True, implementation='xla')
    # stats: recomputed (stop-gradient, DCE'd on unlogged steps)
    s = jnp.einsum('bthk,bshk->bhts', q, kk) / math.sqrt(d // h)
    causal = jnp.tril(jnp.ones((t, t), bool))
    s = jnp.where(causal, s, jnp.finfo(s.dtype).min)
    ps = jax.lax.stop_gradient(jax.nn.softmax(s, axis=-1))
    ent = -jnp.sum(jnp.where(causal, ps * jnp.log(jnp.where(ps > 0, ps, 1.0)), 0.0), -1)
    o = self.o(out.reshape(b, t, d))
    o = drop(o) if self.out_dropout else o
    stats = (ent, ps[..., 0])
    return (o, *stats, ps) if probs else (o, *stats)

  return {'headmajor': call_headmajor, 'qscale': call_qscale, 'perhead': call_perhead,
          'dpa': call_dpa}


def _attention(name):
  @contextlib.contextmanager
  def cm(config):
    from tinyjax import model as M
    with patch(M.Attention, '__call__', _attention_variants()[name])(config) as c:
      yield c
  return cm


def _flat_linear():
  @contextlib.contextmanager
  def cm(config):
    from flax import nnx
    old = nnx.Linear.__call__

    def call(self, inputs, *a, **k):
      lead = inputs.shape[:-1]
      return old(self, inputs.reshape(-1, inputs.shape[-1]), *a, **k).reshape(*lead, -1)
    with patch(nnx.Linear, '__call__', call)(config) as c:
      yield c
  return cm


def _custom_layernorm():
  @contextlib.contextmanager
  def cm(config):
    import jax
    import jax.numpy as jnp
    from tinyjax import model as M

    def fwd(x, g, b, eps):
      xc = x - x.mean(-1, keepdims=True)
      r = jax.lax.rsqrt((xc * xc).mean(-1, keepdims=True) + eps)
      return xc * r * g + b, (xc * r, r, g)

    @jax.custom_vjp
    def ln(x, g, b, eps):
      return fwd(x, g, b, eps)[0]

    def bwd(res, dy):
      xhat, r, g = res
      lead = tuple(range(dy.ndim - 1))
      dxh = dy * g
      dx = r * (dxh - dxh.mean(-1, keepdims=True) - xhat * (dxh * xhat).mean(-1, keepdims=True))
      return dx, (dy * xhat).sum(lead), dy.sum(lead), None
    ln.defvjp(fwd, bwd)
    old = M.Norm.__call__

    def call(self, x):
      if self.kind != 'layernorm':
        return old(self, x)
      return ln(x, self.ln.scale[...], self.ln.bias[...], self.eps)
    with patch(M.Norm, '__call__', call)(config) as c:
      yield c
  return cm


def _both(a, b):
  @contextlib.contextmanager
  def cm(config):
    with a(config) as c1, b(c1) as c2:
      yield c2
  return cm


VARIANTS = {
    'base': nothing,
    # q, k, v projected straight to [B, H, T, K] (kernel reshaped [D, H, K]).
    'headmajor': _attention('headmajor'),
    # the 1/sqrt(K) scale on q ([B, T, D]) instead of the scores ([B, H, T, T]).
    'qscale': _attention('qscale'),
    # one [B, T, T] attention per head, as tiny-llm's four Head modules.
    'perhead': _attention('perhead'),
    # jax.nn.dot_product_attention(implementation='xla', is_causal=True).
    'dpa': _attention('dpa'),
    # every nnx.Linear applied to its input flattened to rows [B*T, D] (the
    # weight gradient is then a 2-D product: no [B, T] contraction).
    'flat': _flat_linear(),
    # LayerNorm with a hand-written backward (two row and two column sums).
    'ln': _custom_layernorm(),
    'flat_ln': _both(_flat_linear(), _custom_layernorm()),
}
# Variants that compile the same chunk with XLA options (jax.jit compiler_options).
COMPILER_OPTIONS = {
    # XLA:CPU's dots and reductions without YNNPACK (Eigen / its own loops).
    'ynn_none': {'xla_cpu_experimental_ynn_fusion_type': ''},
    # YNNPACK for dots only (not reductions).
    'ynn_dot': {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'},
    # 512-bit vectors for XLA's own loops (the CPU has AVX-512; XLA's default is 256).
    'vec512': {'xla_cpu_prefer_vector_width': 512},
}


def patch(obj, name, value):
  """A context manager setting obj.name = value for its duration."""
  @contextlib.contextmanager
  def cm(config):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
      yield config
    finally:
      setattr(obj, name, old)
  return cm


def build(config_path, variant, log_every, start):
  import jax
  from tinyjax import api
  from tinyjax import program as program_lib
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  config = api.load_config(config_path)
  with config.unlocked():
    config.train.log_every = log_every
    config.train.chunk_steps = log_every
  with VARIANTS[variant](config) as config:
    group = sweep_lib.expand(config)[0]
    task = train.build_task(group.config)
    prog = program_lib.Program(group.config, task)
    if variant in COMPILER_OPTIONS:
      prog.chunk = jax.jit(prog._chunk, compiler_options=COMPILER_OPTIONS[variant])
    hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
    data = jax.device_put(prog.data)
    state = prog.init(hp)
    hp = prog.with_init(hp, state)
    jax.block_until_ready(state)
    t0 = time.process_time()
    compiled = prog.chunk.lower(state, hp, data, start, log_every).compile()
    compile_cpu = time.process_time() - t0
  return compiled, state, hp, data, compile_cpu


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--config', default='configs/tiny_llm.py')
  ap.add_argument('--variants', default='base')
  ap.add_argument('--repeats', type=int, default=5)
  ap.add_argument('--log_every', type=int, default=50)
  ap.add_argument('--start', type=int, default=5001)
  a = ap.parse_args()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  import jax
  import numpy as np
  names = a.variants.split(',')
  for n in names:
    if n not in VARIANTS and n in COMPILER_OPTIONS:
      VARIANTS[n] = nothing
  built = {}
  for n in names:
    built[n] = build(a.config, n, a.log_every, a.start)
    print(f'{n}: compiled, {built[n][4]:.1f} CPU s', flush=True)
  first = {}
  cpu = {n: [] for n in names}
  for r in range(a.repeats):
    for n in names:
      compiled, state, hp, data, _ = built[n]
      t0, w0 = time.process_time(), time.perf_counter()
      new, rows = compiled(state, hp, data, a.start + r * a.log_every, a.log_every)
      jax.block_until_ready(rows)
      cpu[n].append((time.process_time() - t0) / a.log_every * 1e3)
      wall = (time.perf_counter() - w0) / a.log_every * 1e3
      if r == 1:  # the loss after the first chunk's log_every updates
        first[n] = np.asarray(rows['loss'])
      built[n] = (compiled, new, hp, data, built[n][4])
      print(f'round {r} {n}: {cpu[n][-1]:.0f} CPU ms/step ({wall:.0f} wall, under load)',
            flush=True)
  ref = first[names[0]]
  for n in names:
    c = sorted(cpu[n])
    print(f'{n}: median {c[len(c) // 2]:.0f} CPU ms/step, min {c[0]:.0f}; '
          f'loss diff vs {names[0]} {np.nanmax(np.abs(first[n] - ref)):.2e}; '
          f'compile {built[n][4]:.1f} CPU s')


if __name__ == '__main__':
  main()
