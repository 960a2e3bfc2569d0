"""tinyjax against the PyTorch originals of its text systems, in one process.

  python experiments/torch_reference.py [--systems tiny_llm,guppylm] [--repeats 5]
      [--first_step tiny_llm,guppylm,pillmish] [--out experiments/results/torch_reference.json]
      [--guppy_buckets 40,48]

Needs torch (requirements-interop.txt). For each system, on the same CPU, in
this one process, interleaved (tinyjax chunk, torch steps, tinyjax chunk,
...), `--repeats` rounds:

  tinyjax  the config's compiled training chunk exactly as tinyjax.train runs
           it (tinyjax.program.Program: batches drawn in the program, a metric
           row every log_every steps), timed per chunk; chunks start at steps
           with no evaluation in them;
  torch    experiments/torch_models.py: tiny-llm as its train.py is structured
           (4 Head modules a block, get_batch, AdamW 3e-4), GuppyLM from its
           spec (rows padded to the batch's longest, as its collate), eager,
           torch.set_num_threads(2).

Reported per system: ms/step (median over rounds, wall and process CPU), the
ratio tinyjax / torch, compile seconds (tinyjax: the chunk's lower + compile;
torch eager: none) and first-step seconds (model built to first step done),
and the share of peak FLOP/s:

  FLOP per step = 6 x P_matmul x N_pos + 12 x L x B x T^2 x d
    P_matmul: the parameters of the matrix multiplies (blocks' Linear weights
    and the head; embedding lookups are not multiplies), N_pos = B x T
    positions computed (tinyjax: every padded position; torch GuppyLM: the
    mean of its per-batch padded lengths); the second term is attention's
    two T x T products (forward 4 B T^2 d per layer, backward twice that),
    causal masking not exploited by either.
  peak = 2 cores x 2 FMA ports x 8 fp32 lanes (AVX2) x 2 FLOP x 2.8 GHz
       = 179.2 GFLOP/s (the machine's nominal clock; its AVX-512 would double it).

--first_step: seconds from process start to the first training step done, for
`python -m tinyjax.run --config configs/<name>.py` (a child process that
trains as tinyjax.run does and exits after step 0 has run), fresh (an empty
persistent compilation cache) and again with that cache filled (a rerun).

Writes JSON (--out); --table JSON prints docs/benchmarks.md's tables from it.
Timings on a shared machine are upper bounds: the JSON records the load
average and the CPU time other processes used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

PEAK_FLOPS = 2 * 2 * 8 * 2 * 2.8e9  # cores x FMA ports x AVX2 fp32 lanes x 2 x GHz
# First-step configs (--first_step) and what the timing rounds use.
CONFIGS = {'tiny_llm': 'configs/tiny_llm.py', 'guppylm': 'configs/guppylm.py',
           'pillmish': 'configs/pillmish.py'}


def cpu_total():
  """Seconds of CPU every process used so far (/proc/stat), None off Linux."""
  try:
    with open('/proc/stat') as f:
      vals = [int(v) for v in f.readline().split()[1:]]
    return (vals[0] + vals[1] + vals[2] + vals[5] + vals[6]) / os.sysconf('SC_CLK_TCK')
  except OSError:
    return None


class Timer:
  """Wall, this process's CPU, and the other processes' CPU per wall second."""

  def __enter__(self):
    self.w, self.c, self.all = time.perf_counter(), time.process_time(), cpu_total()
    return self

  def __exit__(self, *exc):
    self.wall = time.perf_counter() - self.w
    self.cpu = time.process_time() - self.c
    total = cpu_total()
    self.other = (None if total is None else
                  max(0.0, (total - self.all - self.cpu) / max(self.wall, 1e-9)))


def flops(p_matmul, n_layers, d, batch, t, positions=None):
  """FLOP of one training step (the formula in the docstring)."""
  positions = batch * t if positions is None else positions
  return 6 * p_matmul * positions + 12 * n_layers * batch * t * t * d


def matmul_params(c, vocab):
  m = c.model
  per_block = 4 * m.d_model * m.d_model + 2 * m.d_model * m.d_mlp
  return m.n_layers * per_block + m.d_model * vocab


def median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# ------------------------------------------------------------------ tinyjax ---
def tinyjax_side(config, log_every, starts_from):
  """(time_chunk(i) -> steps, info): the config's Program, compiled; chunk i
  runs log_every steps from starts_from + i * log_every (no eval in them)."""
  import jax
  from tinyjax import program as program_lib
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  with config.unlocked():
    config.train.log_every = log_every
    config.train.chunk_steps = log_every
  group = sweep_lib.expand(config)[0]
  with Timer() as t_task:
    task = train.build_task(group.config)
  prog = program_lib.Program(group.config, task)
  hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  data = jax.device_put(prog.data)
  state = prog.init(hp)
  hp = prog.with_init(hp, state)
  jax.block_until_ready(state)
  with Timer() as t_compile:
    compiled = prog.chunk.lower(state, hp, data, starts_from, log_every).compile()
  box = {'state': state}
  with Timer() as t_first:
    box['state'], rows = compiled(box['state'], hp, data, starts_from, 1)
    jax.block_until_ready(rows)

  def run(i):
    box['state'], rows = compiled(box['state'], hp, data, starts_from + (i + 1) * log_every,
                                  log_every)
    jax.block_until_ready(rows)
    return log_every

  info = {'num_params': prog.num_params, 'task_s': t_task.wall,
          'compile_s': t_compile.wall, 'compile_cpu_s': t_compile.cpu,
          'first_step_s': t_first.wall, 'seq_len': task.train.seq_len,
          'vocab': prog.vocab_size}
  return run, info, task


def interleave(name, tj_run, torch_run, repeats, torch_steps, out):
  """repeats rounds of (tinyjax chunk, torch_steps torch steps)."""
  rounds = []
  for r in range(repeats):
    with Timer() as a:
      n_a = tj_run(r)
    with Timer() as b:
      for _ in range(torch_steps):
        torch_run()
    rounds.append({'tinyjax_ms': a.wall / n_a * 1e3, 'tinyjax_cpu_ms': a.cpu / n_a * 1e3,
                   'tinyjax_other_cores': a.other,
                   'torch_ms': b.wall / torch_steps * 1e3, 'torch_cpu_ms': b.cpu / torch_steps * 1e3,
                   'torch_other_cores': b.other})
    print(f'{name} round {r}: tinyjax {rounds[-1]["tinyjax_ms"]:.0f} ms/step '
          f'(CPU {rounds[-1]["tinyjax_cpu_ms"]:.0f}), torch {rounds[-1]["torch_ms"]:.0f} ms/step '
          f'(CPU {rounds[-1]["torch_cpu_ms"]:.0f}); other processes '
          f'{a.other or 0:.2f} / {b.other or 0:.2f} cores', flush=True)
  for k in ('tinyjax_ms', 'tinyjax_cpu_ms', 'torch_ms', 'torch_cpu_ms'):
    out[k] = median([r[k] for r in rounds])
  out['ratio'] = out['tinyjax_ms'] / out['torch_ms']
  out['ratio_cpu'] = out['tinyjax_cpu_ms'] / out['torch_cpu_ms']
  out['max_other_cores'] = max((r['tinyjax_other_cores'] or 0, r['torch_other_cores'] or 0)
                               for r in rounds)
  out['rounds'] = rounds
  return out


def bench_tiny_llm(repeats, torch_steps=0):
  import numpy as np
  import torch
  import torch_models
  from configs import tiny_llm
  c = tiny_llm.get_config()
  log_every = c.train.log_every  # the config's: one metric row per 50 steps
  tj_run, info, task = tinyjax_side(c, log_every, 5001)  # past every eval step
  data = torch.as_tensor(np.asarray(task.train.tokens_N), dtype=torch.long)
  with Timer() as t_first:
    step, model, _ = torch_models.tiny_llm_trainer(data)
    step()
  out = {'config': 'configs/tiny_llm.py', 'batch': 32, 'seq_len': 128,
         'tinyjax': info, 'torch_params': sum(p.numel() for p in model.parameters()),
         'torch_first_step_s': t_first.wall, 'torch_compile_s': 0.0,
         'log_every': log_every}
  p = matmul_params(c, info['vocab'])
  f = flops(p, c.model.n_layers, c.model.d_model, 32, 128)
  out.update(p_matmul=p, flop_per_step=f)
  interleave('tiny_llm', tj_run, step, repeats, torch_steps or log_every, out)
  out['tinyjax_peak_share'] = f / (out['tinyjax_ms'] / 1e3) / PEAK_FLOPS
  out['torch_peak_share'] = f / (out['torch_ms'] / 1e3) / PEAK_FLOPS
  return out


def bench_guppylm(repeats, log_every, torch_steps=0, buckets=()):
  import numpy as np
  import torch
  import torch_models
  from configs import guppylm
  c = guppylm.get_config()
  with c.unlocked():  # the published tokenizer: the same ids as training one, no training
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'
    c.train.bucket_lengths = tuple(buckets)  # () = the config's default: every batch at 58
  tj_run, info, task = tinyjax_side(c, log_every, 10001)  # no step a multiple of eval.every
  tr = task.train
  with Timer() as t_first:
    step, model, _, st = torch_models.guppy_trainer(tr.x_NxT, tr.y_NxT, tr.mask_NxT)
    step()
  st['positions'], st['step'] = 0, 1
  out = {'config': 'configs/guppylm.py (published tokenizer)', 'batch': 32,
         'bucket_lengths': list(buckets),
         'log_every': log_every, 'tinyjax': info,
         'torch_params': sum(p.numel() for p in model.parameters()),
         'torch_first_step_s': t_first.wall, 'torch_compile_s': 0.0}
  interleave('guppylm', tj_run, step, repeats, torch_steps or log_every, out)
  t = info['seq_len']
  p = matmul_params(c, info['vocab'])
  torch_t = st['positions'] / (32 * (st['step'] - 1))  # mean padded length of its batches
  f_tj = flops(p, c.model.n_layers, c.model.d_model, 32, t)
  f_torch = flops(p, c.model.n_layers, c.model.d_model, 32, torch_t)
  if buckets:  # the FLOP below count every row at t: with buckets an overstatement
    out['tinyjax_flop_note'] = f'counted at {t} positions; unlogged steps ran cut to {buckets}'
  out.update(p_matmul=p, tinyjax_seq_len=t, torch_mean_seq_len=torch_t,
             tinyjax_flop_per_step=f_tj, torch_flop_per_step=f_torch,
             tinyjax_peak_share=f_tj / (out['tinyjax_ms'] / 1e3) / PEAK_FLOPS,
             torch_peak_share=f_torch / (out['torch_ms'] / 1e3) / PEAK_FLOPS)
  return out


# --------------------------------------------------------- first step (child) ---
def child(config_path, workdir):
  """Trains config_path as tinyjax.run does; prints FIRST_STEP and exits as
  soon as step 0 has run (the first chunk, run for one step)."""
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  from tinyjax import api
  from tinyjax import train
  t0 = time.perf_counter()
  marks = {'cache_hits': 0, 'cache_misses': 0, 'backend_compile_s': 0.0}

  def on_event(event, **_):
    for k in ('cache_hits', 'cache_misses'):
      if event == f'/jax/compilation_cache/{k}':
        marks[k] += 1

  def on_duration(event, secs, **_):
    if event == '/jax/core/compile/backend_compile_duration':
      marks['backend_compile_s'] += secs
  jax.monitoring.register_event_listener(on_event)
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  real_task, real_prog = train.build_task, train.program_for

  def build_task(*a, **k):
    out = real_task(*a, **k)
    marks.setdefault('task_built_s', time.perf_counter() - t0)
    return out

  def program_for(config, task):
    prog = real_prog(config, task)
    real = prog.chunk

    def first(state, hp, data, start, n):
      marks['chunk_called_s'] = time.perf_counter() - t0
      out = real(state, hp, data, start, 1)
      jax.block_until_ready(out)
      marks['first_step_s'] = time.perf_counter() - t0
      print('FIRST_STEP ' + json.dumps(marks), flush=True)
      os._exit(0)
    first.lower = real.lower  # (tinyjax.loop compiles the chunk ahead with it)
    prog.chunk = first
    return prog

  train.build_task, train.program_for = build_task, program_for
  api.train(api.load_config(config_path), workdir, overwrite=True, progress=False)


def first_step(name, cache_dir):
  """Seconds from spawning the child to its FIRST_STEP line (and its marks)."""
  workdir = tempfile.mkdtemp(prefix=f'tinyjax-first-{name}-')
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'),
             TINYJAX_COMPILATION_CACHE=cache_dir, PYTHONPATH=ROOT)
  t0 = time.perf_counter()
  p = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--child', CONFIGS[name],
                        workdir], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
  marks = None
  for line in p.stdout:
    if line.startswith('FIRST_STEP '):
      wall = time.perf_counter() - t0
      marks = json.loads(line.split(' ', 1)[1])
  err = p.stderr.read()
  p.wait()
  shutil.rmtree(workdir, ignore_errors=True)
  if marks is None:
    raise RuntimeError(f'{name}: no first step:\n{err[-3000:]}')
  return {'from_process_start_s': wall, **marks}


def table(path):
  """The docs' tables (docs/benchmarks.md) from a stored JSON."""
  r = json.load(open(path))
  print(f'Load average {r["machine"]["loadavg_start"][0]:.1f} at the start, '
        f'{r["machine"]["loadavg_end"][0]:.1f} at the end; {r["total_s"]:.0f} s in all.\n')
  print('| system | tinyjax ms/step | torch ms/step | ratio | ratio (CPU s) | tinyjax peak share '
        '| torch peak share | tinyjax compile s | first step s, compiled (tinyjax / torch) |')
  print('|---|---|---|---|---|---|---|---|---|')
  for name, s in r['systems'].items():
    print(f'| {name} | {s["tinyjax_ms"]:.0f} | {s["torch_ms"]:.0f} | {s["ratio"]:.2f}x | '
          f'{s["ratio_cpu"]:.2f}x | {s["tinyjax_peak_share"]:.0%} | {s["torch_peak_share"]:.0%} | '
          f'{s["tinyjax"]["compile_s"]:.1f} | {s["tinyjax"]["first_step_s"]:.2f} / '
          f'{s["torch_first_step_s"]:.2f} |')
  print('\n| config | first step, fresh | with the cache | cache hits (cached run) '
        '| backend compile s (fresh / cached) |')
  print('|---|---|---|---|---|')
  for name, f in r['first_step'].items():
    print(f'| {name} | {f["fresh"]["from_process_start_s"]:.1f} s | '
          f'{f["cached"]["from_process_start_s"]:.1f} s | {f["cached"]["cache_hits"]} of '
          f'{f["cached"]["cache_hits"] + f["cached"]["cache_misses"]} | '
          f'{f["fresh"]["backend_compile_s"]:.1f} / {f["cached"]["backend_compile_s"]:.1f} |')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--table', metavar='JSON', help='print the docs\' tables from a stored JSON')
  ap.add_argument('--systems', default='tiny_llm,guppylm')
  ap.add_argument('--repeats', type=int, default=5)
  ap.add_argument('--guppy_log_every', type=int, default=10,
                  help='GuppyLM chunk (= log_every) in the timing rounds (the config: 100)')
  ap.add_argument('--guppy_buckets', default='',
                  help='GuppyLM train.bucket_lengths, e.g. 40,48 (default: none, as its config)')
  ap.add_argument('--torch_steps', type=int, default=0,
                  help='torch steps per round (0 = as many as the tinyjax chunk runs)')
  ap.add_argument('--first_step', default='tiny_llm,guppylm,pillmish')
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments/results/torch_reference.json'))
  ap.add_argument('--child', nargs=2, metavar=('CONFIG', 'WORKDIR'), help=argparse.SUPPRESS)
  a = ap.parse_args()
  if a.child:
    return child(*a.child)
  if a.table:
    return table(a.table)
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  t_all = time.perf_counter()
  result = {'command': 'python experiments/torch_reference.py ' + ' '.join(sys.argv[1:]),
            'machine': {'cpus': os.cpu_count(), 'processor': platform.processor(),
                        'loadavg_start': os.getloadavg()},
            'peak_flops': PEAK_FLOPS,
            'peak_assumed': '2 cores x 2 FMA x 8 fp32 lanes (AVX2) x 2 FLOP x 2.8 GHz',
            'flop_formula': '6 x P_matmul x B x T + 12 x L x B x T^2 x d',
            'systems': {}, 'first_step': {}}
  # First steps before this process starts JAX's threads: the children get the CPU.
  for name in [s for s in a.first_step.split(',') if s]:
    cache = tempfile.mkdtemp(prefix='tinyjax-cache-')
    fresh = first_step(name, cache)
    cached = first_step(name, cache)
    shutil.rmtree(cache, ignore_errors=True)
    result['first_step'][name] = {'fresh': fresh, 'cached': cached}
    print(f'{name}: first step {fresh["from_process_start_s"]:.1f} s fresh, '
          f'{cached["from_process_start_s"]:.1f} s with the cache', flush=True)
  import torch
  torch.set_num_threads(2)
  result['torch_version'] = torch.__version__
  import jax
  result['jax_version'] = jax.__version__
  for name in [s for s in a.systems.split(',') if s]:
    if name == 'tiny_llm':
      r = bench_tiny_llm(a.repeats, a.torch_steps)
    elif name == 'guppylm':
      r = bench_guppylm(a.repeats, a.guppy_log_every, a.torch_steps,
                        [int(b) for b in a.guppy_buckets.split(',') if b])
    else:
      raise SystemExit(f'--systems: unknown {name!r}; use tiny_llm, guppylm')
    result['systems'][name] = r
    print(f'{name}: tinyjax {r["tinyjax_ms"]:.0f} ms/step vs torch {r["torch_ms"]:.0f} '
          f'(x{r["ratio"]:.2f}; CPU x{r["ratio_cpu"]:.2f}); peak share tinyjax '
          f'{r["tinyjax_peak_share"]:.0%}, torch {r["torch_peak_share"]:.0%}; '
          f'compile {r["tinyjax"]["compile_s"]:.1f} s', flush=True)
  result['machine']['loadavg_end'] = os.getloadavg()
  result['total_s'] = time.perf_counter() - t_all
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'wrote {a.out} ({result["total_s"]:.0f} s)')


if __name__ == '__main__':
  main()
