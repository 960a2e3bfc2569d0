"""Does a group of runs fit in device memory? An estimate before compiling.

A sweep too big for its device fails on the device, after compiling, with
XLA's RESOURCE_EXHAUSTED (or, on a CPU, the kernel's OOM killer: no message
at all). `check` refuses it first, from shapes alone (jax.eval_shape), and
says how many runs per device would fit.

Per run, counted from the shapes of one run:
  the training state (parameters, optimizer state) x3: the state a chunk
    takes, the one it returns, and the gradients and updates between;
  the initial parameters (hp['w0']) when the geometry lens is on;
  one batch, and the forward pass's outputs (logits and what the model returns
    beside them) x2: kept for the backward pass, and their gradients;
  one chunk's metric rows (traced only when the rest is near the budget: the
    trace of a whole step costs seconds on a CPU);
and per device, once: the task's data (replicated).
XLA's temporaries are not counted, so this is an estimate from below: a
sweep it refuses cannot fit; one it passes can still run out on the device,
which the run then reports as a fault (tinyjax.faults).

The budget per device: TINYJAX_DEVICE_MEMORY_BYTES if set (tests, or to
leave room for other jobs), else the device's own limit (memory_stats()
'bytes_limit' on a GPU or TPU), else on a CPU the host's physical memory
shared by its CPU devices.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np

from tinyjax.tasks import ConfigError

BUDGET_ENV = 'TINYJAX_DEVICE_MEMORY_BYTES'
HEADROOM = 0.9  # of the budget: the runtime, the compiled program, fragmentation


def nbytes(tree) -> int:
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def budget(device=None) -> tuple[int | None, str]:
  """(bytes one device may use, where that number comes from); None if unknown."""
  if os.environ.get(BUDGET_ENV):
    try:
      return int(float(os.environ[BUDGET_ENV])), BUDGET_ENV
    except ValueError:
      raise ConfigError(f'{BUDGET_ENV}={os.environ[BUDGET_ENV]!r}: not a number of bytes') from None
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001 (a backend without memory statistics)
    stats = {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'{device.platform} memory limit'
  if device.platform == 'cpu' and hasattr(os, 'sysconf'):
    try:
      phys = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError):
      return None, 'unknown'
    n_cpu = sum(d.platform == 'cpu' for d in jax.local_devices())
    return phys // max(n_cpu, 1), f'host memory / {n_cpu} CPU devices'
  return None, 'unknown'


def per_run_bytes(prog, hp_np, with_rows: bool = False) -> int:
  """The estimate for one run of the group (see the module docstring)."""
  hp1 = jax.tree.map(lambda x: x[:1], hp_np)
  state1 = jax.eval_shape(prog.init, hp1)  # [1, ...]
  one = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), tree)
  state, hp = one(state1), jax.tree.map(lambda x: x[0], hp_np)
  batch = jax.eval_shape(prog._batch, prog.data['train'], hp, 0)
  forward = jax.eval_shape(prog._forward, state['params'], batch)
  out = 3 * nbytes(state) + nbytes(batch) + 2 * nbytes(forward)
  if prog.lens.geometry:
    out += nbytes(state['params'])
  if with_rows:
    _, m = jax.eval_shape(lambda s, h: prog._step_run(s, h, prog.data, 0), state, hp)
    out += 2 * prog.groups_per_chunk * nbytes(m)  # train and eval metrics per row
  return out


def _gb(n: int) -> str:
  return f'{n / 2**30:.2f} GB' if n >= 2**28 else f'{n / 2**20:.1f} MB'


def check(prog, hp_np, n_runs: int, n_devices: int, where: str = 'the sweep',
          per_run=None) -> None:
  """ConfigError if `n_runs` runs over `n_devices` devices cannot fit.
  (per_run: per_run_bytes(prog, hp_np, with_rows), or a stand-in that recalls it.)"""
  per_run = per_run or (lambda hp, with_rows=False: per_run_bytes(prog, hp, with_rows))
  limit, source = budget()
  if limit is None:
    return
  per_device = math.ceil(n_runs / n_devices)
  data = nbytes(prog.data)
  usable = int(limit * HEADROOM)
  run = per_run(hp_np)
  if data + per_device * run > usable / 4:  # near the budget: count the rows too
    run = per_run(hp_np, with_rows=True)
  need = data + per_device * run
  if need <= usable:
    return
  fit = max((usable - data) // run, 0)
  device = jax.local_devices()[0]
  raise ConfigError(
      f'{where} does not fit in device memory: {per_device} run'
      f'{"s" if per_device > 1 else ""} per device need about {_gb(need)} ({_gb(run)} a run, '
      f'estimated from the shapes), and a {device.platform} device has {_gb(limit)} '
      f'({source}); at most {fit} runs per device fit: '
      + ('use fewer runs (--config.sweep.seeds, --config.sweep.lrs, --config.sweep.grid)'
         + ('' if device.platform == 'cpu' else ' or more devices') if fit else
         'use a smaller model or train.batch_size'))
