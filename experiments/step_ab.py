"""A/B of training-step variants in one process, interleaved, CPU seconds.

  python experiments/step_ab.py [--config configs/tiny_llm.py] [--variants base,x]
      [--repeats 5] [--log_every 50] [--start 5001]

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


VARIANTS = {'base': nothing}
# Variants that compile the same chunk with XLA options (jax.jit compiler_options).
COMPILER_OPTIONS = {}


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


def config_field(**fields):
  """A variant that sets config fields ('model.x': value)."""
  @contextlib.contextmanager
  def cm(config):
    config = config.copy_and_resolve_references()
    with config.unlocked():
      for path, value in fields.items():
        node = config
        *parts, last = path.split('.')
        for p in parts:
          node = node[p]
        node[last] = value
    yield config
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
