"""python -m tinyjax.bench --suite accelerator [--smoke] [--out accelerator.json]

One command for the first time a GPU or TPU is at hand; one JSON. The jobs,
each a whole `train_and_evaluate` with the config's every metric, lens,
evaluation, checkpoint and output (compilation included), one after another
in this process:

  timmy       configs/timmy.py, 4,096 runs x 6,000 steps;
  grokking    configs/grokking_nanda.py (p = 113), 8 seeds x 40,000 steps;
  tiny_llm    configs/tiny_llm.py:sweep, 8 seeds x 5,000 steps;
  guppylm     configs/guppylm.py, 1 run x 10,000 steps;
  throughput  Timmy at 1, 4, 16, 64, 256, 1,024 and 4,096 runs x 1,000 steps:
              microseconds per run-step of the whole job run a second time
              in the process (compiled: jit's cache warm), beside the first
              run's seconds with compilation.

Per job: wall seconds, compile seconds, run-steps per second, the median
final loss, and the device's peak memory so far (memory_stats()
'peak_bytes_in_use': GPU and TPU only; a running maximum over the process,
so a job's figure is exact only where it is the largest so far) beside
tinyjax.memory's estimate for the job. The sizes aim at 8 minutes on one
GPU; it has not been run on one yet (no accelerator in the sessions that
wrote it), so that is a target, not a measurement.

--smoke: the same jobs at tiny sizes (small models, 20 steps, bare mode:
output.minimal), seconds on a CPU: tests/test_bench_suite.py runs it, so the
suite's code has run before the first time a device exists.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

SUITE_BUDGET_SECONDS = 8 * 60  # the goal on one GPU or TPU (not yet measured)
THROUGHPUT_RUNS = (1, 4, 16, 64, 256, 1024, 4096)
THROUGHPUT_STEPS = 1000


def _set(cfg, **fields):
  """cfg with dotted fields set ('train.steps': 20)."""
  from tinyjax import cost
  return cost.with_overrides(cfg, fields)


def jobs(smoke: bool) -> dict:
  """{name: config} of the suite's training jobs."""
  from configs import grokking_nanda
  from configs import guppylm
  from configs import timmy
  from configs import tiny_llm
  if not smoke:
    return {
        'timmy': _set(timmy.get_config(), **{'sweep.seeds': 4096, 'train.steps': 6000}),
        'grokking': _set(grokking_nanda.get_config(), **{'sweep.seeds': 8}),
        'tiny_llm': tiny_llm.get_config('sweep'),
        'guppylm': guppylm.get_config(),
    }
  # Bare mode (output.minimal): the CI check runs the suite's code in seconds;
  # a full job's every lens and evaluation compiles for a minute on a CPU.
  tiny = {'train.steps': 20, 'train.chunk_steps': 10, 'train.log_every': 5,
          'output.minimal': True}
  return {
      'timmy': smoke_timmy(2),
      'grokking': _set(grokking_nanda.get_config('smoke'), **{
          'sweep.seeds': 2, **tiny, 'train.log_every': 10, 'model.d_model': 16,
          'model.n_heads': 2, 'model.d_mlp': 32}),
      'tiny_llm': _set(tiny_llm.get_config('smoke'), **{'sweep.seeds': 2, 'output.minimal': True}),
      'guppylm': _set(guppylm.get_config('smoke'), **{'output.minimal': True}),
  }


def smoke_timmy(runs: int):
  """--smoke's Timmy: the timmy job and the throughput cases are one program
  (at 2 runs, the job's, read back from JAX's persistent cache), compiled twice
  in all instead of three times."""
  from configs import timmy
  return _set(timmy.get_config('smoke'), **{
      'sweep.seeds': runs, 'train.steps': 20, 'train.chunk_steps': 10, 'train.log_every': 5,
      'output.minimal': True, 'checkpoint.every': 10, 'eval.every': 10})


def throughput_cases(smoke: bool):
  from configs import timmy
  for r in (1, 2) if smoke else THROUGHPUT_RUNS:
    yield r, (smoke_timmy(r) if smoke else
              _set(timmy.get_config(), **{'sweep.seeds': r, 'train.steps': THROUGHPUT_STEPS}))


def peak_device_bytes() -> int | None:
  """The device's peak memory in use so far (None where it reports none: CPU)."""
  import jax
  peaks = [(d.memory_stats() or {}).get('peak_bytes_in_use') for d in jax.local_devices()]
  return None if any(p is None for p in peaks) else int(max(peaks))


def estimate_bytes(cfg) -> int:
  """tinyjax.memory's estimate for the job, per device (from below)."""
  import jax
  from tinyjax import memory
  from tinyjax import program as program_lib
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  (group,) = sweep_lib.expand(cfg)[:1]
  prog = train.program_for(group.config, train.build_task(group.config))
  hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  n_dev = train.runs_mesh(len(group.runs)).devices.size
  per_run = memory.per_run_bytes(prog, {k: v[:1] for k, v in hp.items()})
  return int(per_run * -(-len(group.runs) // n_dev) + memory.nbytes(prog.data))


def run_job(cfg, workdir: str, compiled: bool = False) -> dict:
  """One whole job; compiled: with the programs of the job before (jit's
  cache warm: what remains is the run, the writing and the host's work)."""
  import numpy as np
  from tinyjax import cost
  from tinyjax import train
  runs, steps = cfg.sweep.seeds or 1, cfg.train.steps
  if not compiled:
    train._PROGRAMS.clear()
  with cost._compile_log() as comp:
    t = time.perf_counter()
    summary = train.train_and_evaluate(cfg, workdir, overwrite=True, progress=False)
    seconds = time.perf_counter() - t
  compile_s = sum(sum(d.values()) for d in comp.values())
  losses = [r['final']['loss'] for r in summary['runs']]
  losses = [x for x in losses if x is not None]
  return {'runs': runs, 'steps': steps, 'seconds': round(seconds, 3),
          'compile_seconds': round(compile_s, 3),
          'run_steps_per_second': round(runs * steps / seconds, 1),
          'final_loss_median': float(np.median(losses)) if losses else None,
          'peak_device_bytes': peak_device_bytes(), 'estimated_bytes': estimate_bytes(cfg)}


def main(suite: str, smoke: bool, out_path: str):
  assert suite == 'accelerator'
  import jax
  t0 = time.perf_counter()
  out = {'suite': suite, 'smoke': smoke, 'date': time.strftime('%Y-%m-%d'),
         'machine': platform.platform(), 'jax': jax.__version__,
         'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
         'budget_seconds': SUITE_BUDGET_SECONDS, 'jobs': {}, 'throughput': []}

  def save():
    out['total_seconds'] = round(time.perf_counter() - t0, 3)
    out['within_budget'] = out['total_seconds'] <= SUITE_BUDGET_SECONDS
    with open(out_path + '.tmp', 'w') as f:
      json.dump(out, f, indent=2)
    os.replace(out_path + '.tmp', out_path)

  with tempfile.TemporaryDirectory() as root:
    for name, cfg in jobs(smoke).items():
      out['jobs'][name] = run_job(cfg, os.path.join(root, name))
      print(f"{name}: {out['jobs'][name]}", flush=True)
      save()  # a job that fails leaves the ones before it on disk
    for runs, cfg in throughput_cases(smoke):
      first = run_job(cfg, os.path.join(root, f'throughput_{runs}'))
      r = run_job(cfg, os.path.join(root, f'throughput_{runs}'), compiled=True)
      r['first_seconds'] = first['seconds']  # with compilation
      r['us_per_run_step'] = round(1e6 * r['seconds'] / (runs * r['steps']), 2)
      out['throughput'].append(r)
      print(f"throughput {runs} runs: {r['us_per_run_step']} us per run-step", flush=True)
      save()
  save()
  print(f"wrote {out_path} ({out['total_seconds']} s; budget {SUITE_BUDGET_SECONDS} s "
        f"on a GPU or TPU)")
