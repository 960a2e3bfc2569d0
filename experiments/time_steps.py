"""Seconds per training step of a config (wall and process CPU), compilation excluded.

  python experiments/time_steps.py configs/grokking_nanda.py:smoke [--steps 300] [--seeds N]

Builds the config's first group exactly as tinyjax.train does (same Program,
same vmapped chunk), compiles a chunk of `--chunk` steps, then times whole
chunks until `--steps` steps have run. Nothing is written.
"""

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tinyjax import program as program_lib  # noqa: E402
from tinyjax import sweep as sweep_lib  # noqa: E402
from tinyjax import train  # noqa: E402


def load(spec):
  path, _, arg = spec.partition(':')
  mod_spec = importlib.util.spec_from_file_location('cfg', path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  return mod.get_config(arg or None)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('config')
  ap.add_argument('--steps', type=int, default=300)
  ap.add_argument('--chunk', type=int, default=100)
  ap.add_argument('--seeds', type=int, default=0, help='sweep.seeds (0 = the config\'s)')
  ap.add_argument('--log_every', type=int, default=0, help='train.log_every (0 = the config\'s)')
  a = ap.parse_args()
  config = load(a.config)
  with config.unlocked():
    config.train.chunk_steps = a.chunk
    if a.log_every:
      config.train.log_every = a.log_every
    if a.seeds:
      config.sweep.seeds = a.seeds
  group = sweep_lib.expand(config)[0]
  task = train.build_task(group.config)
  prog = program_lib.Program(group.config, task)
  hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  data = jax.device_put(prog.data)
  t0, c0 = time.perf_counter(), time.process_time()
  state = prog.init(hp)
  state, rows = prog.chunk(state, hp, data, 0, a.chunk)
  jax.block_until_ready(rows)
  compile_s, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
  t0, c0 = time.perf_counter(), time.process_time()
  done = 0
  while done < a.steps:
    state, rows = prog.chunk(state, hp, data, a.chunk + done, a.chunk)
    done += a.chunk
  jax.block_until_ready(rows)
  dt, cpu = time.perf_counter() - t0, time.process_time() - c0
  print(f'{a.config}: {len(group.runs)} run(s) x {prog.num_params:,} params, '
        f'{getattr(task.train, "num_rows", "stream")} train rows; compile+first chunk {compile_s:.1f} s '
        f'(CPU {compile_cpu:.1f} s); {done} steps in {dt:.1f} s wall, {cpu:.1f} s CPU = '
        f'{dt / done * 1e3:.1f} ms/step wall, {cpu / done * 1e3:.1f} ms/step CPU '
        f'({dt / done / len(group.runs) * 1e3:.1f} ms wall per run-step); '
        f'loss {np.nanmean(np.asarray(rows["loss"])):.3f}')


if __name__ == '__main__':
  main()
