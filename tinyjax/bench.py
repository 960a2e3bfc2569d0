"""python -m tinyjax.bench [--runs 64] [--steps 6000] [--out bench.json]

Measures, in one process on one machine, the Timmy sweep the way a researcher
runs it (train_and_evaluate: every metric, logging to metrics.jsonl and
TensorBoard, checkpoints, report):
  vmapped     --runs seeds as one vmapped program (after a warm-up compile)
  scaling     the same at --small_runs seeds: cost per run-step should not grow
  sequential  the same runs one after another, each a sweep of one (compiled once)
  torch       a PyTorch eager implementation of the same model, data and
              optimizer (loss + backward + SGD only: fewer metrics than ours),
              if torch is installed (pip install torch; an optional extra)
and prints microseconds per run-step, compile time (each function of the
--runs program: lower + compile) and the ratios; writes JSON. Like
tinyjax.run, the runs are split over one CPU device per core (--cpu_devices).
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

flags.DEFINE_integer('runs', 64, 'Seeds in the vmapped sweep.')
flags.DEFINE_integer('small_runs', 8, 'Seeds for the scaling point.')
flags.DEFINE_integer('steps', 6000, 'Training steps per run.')
flags.DEFINE_integer('seq_runs', 0, 'Runs in the sequential loop (0 = --runs).')
flags.DEFINE_integer('torch_runs', 2, 'Runs for the PyTorch eager baseline.')
flags.DEFINE_integer('torch_steps', 1000, 'Steps per PyTorch run.')
flags.DEFINE_string('out', 'bench.json', 'Where to write the figures.')
cli.define_cpu_devices_flag()
FLAGS = flags.FLAGS


def _timmy(runs: int, steps: int, seed: int | None = None):
  from configs import timmy
  cfg = timmy.get_config()
  with cfg.unlocked():
    cfg.train.steps = steps
    cfg.checkpoint.log_spaced = False
    if seed is None:
      cfg.sweep.seeds = runs
    else:
      cfg.seed = seed
  return cfg


def _train(cfg, workdir):
  from tinyjax import train
  t = time.perf_counter()
  train.train_and_evaluate(cfg, workdir, overwrite=True, progress=False)
  return time.perf_counter() - t


def bench_sweep(runs: int, steps: int, root: str) -> dict:
  """Compile with a one-chunk warm-up of the same program, then the full run."""
  chunk = _timmy(runs, steps).train.chunk_steps
  compile_s = _train(_timmy(runs, chunk), os.path.join(root, f'warm{runs}'))
  wall = _train(_timmy(runs, steps), os.path.join(root, f'sweep{runs}'))
  return {'runs': runs, 'steps': steps, 'compile_and_one_chunk_s': round(compile_s, 2),
          'wall_s': round(wall, 2), 'us_per_run_step': round(wall / (runs * steps) * 1e6, 2)}


def bench_compile(runs: int) -> dict:
  """Seconds to compile each function of the --runs program, as train does
  (same sharding), from a fresh Program (jit's cache is per Program)."""
  from tinyjax import program, sweep, train
  (group,) = sweep.expand(_timmy(runs, 6000))
  prog = program.Program(group.config, train.build_task(group.config))
  hp_np = program.hparam_arrays([r['hparams'] for r in group.runs])
  _, _, hp, data = train.place(prog, hp_np, runs)
  out = {}

  def timed(name, fn, *args, **static):
    t = time.perf_counter()
    fn.lower(*args, **static).compile()
    out[name] = round(time.perf_counter() - t, 2)

  timed('init', prog.init, hp)
  state = prog.init(hp)
  timed('chunk', prog.chunk, state, hp, data, 0, group.config.train.chunk_steps)
  timed('evaluate', prog.evaluate, state, hp, data, 0)
  enc = prog.encode_prompts(prog.task.prompts)
  n_new = prog.max_new_tokens(group.config.eval.max_new_tokens, int(enc['lengths'].max()))
  import jax
  timed('generate', prog.generate, state['params'], enc, n_new, prog.settings.arrays(),
        jax.random.key(0), None, 0)
  out['total'] = round(sum(out.values()), 2)
  return out


def bench_sequential(runs: int, steps: int, root: str) -> dict:
  chunk = _timmy(1, steps).train.chunk_steps
  compile_s = _train(_timmy(1, chunk, seed=0), os.path.join(root, 'seqwarm'))
  t = time.perf_counter()
  for seed in range(runs):
    _train(_timmy(1, steps, seed=seed), os.path.join(root, f'seq{seed}'))
  wall = time.perf_counter() - t
  return {'runs': runs, 'steps': steps, 'compile_and_one_chunk_s': round(compile_s, 2),
          'wall_s': round(wall, 2), 'us_per_run_step': round(wall / (runs * steps) * 1e6, 2)}


def bench_torch(runs: int, steps: int) -> dict | None:
  try:
    import torch
  except ImportError:
    return None
  from configs import timmy
  from tinyjax import tasks
  task = tasks.build(timmy.get_config().task)
  x = torch.tensor(task.train.x_NxT, dtype=torch.long)
  y = torch.tensor(task.train.y_NxT, dtype=torch.long)
  t_len, d, h = x.shape[1], 16, 2
  pos = torch.zeros(t_len, d)
  for t in range(t_len):
    for i in range(d):
      a = t / 10000 ** ((i - i % 2) / d)
      pos[t, i] = math.sin(a) if i % 2 == 0 else math.cos(a)
  causal = torch.tril(torch.ones(t_len, t_len, dtype=torch.bool))

  def norm(z):
    mu = z.mean(-1, keepdim=True)
    return (z - mu) / ((z - mu).pow(2).mean(-1, keepdim=True).sqrt() + 2.2e-16)

  def init(seed):
    g = torch.Generator().manual_seed(seed)
    n = lambda *s: (torch.randn(*s, generator=g) * 0.02).requires_grad_()
    z = lambda *s: torch.zeros(*s, requires_grad=True)
    p = {'emb': n(8, d), 'unemb': n(d, 8)}
    for l in range(2):
      p.update({f'{k}{l}': n(d, d) for k in 'qkvo'})
      p.update({f'up{l}': n(d, 64), f'upb{l}': z(64), f'down{l}': n(64, d), f'downb{l}': z(d)})
    return p

  def forward(p):
    z = p['emb'][x] * 4.0 + pos
    for l in range(2):
      a = norm(z)
      q, k, v = (a @ p[f'{n}{l}'] for n in 'qkv')
      sh = lambda m: m.view(m.shape[0], t_len, h, d // h).transpose(1, 2)
      s = sh(q) @ sh(k).transpose(-1, -2) / math.sqrt(d // h)
      w = torch.softmax(s.masked_fill(~causal, float('-inf')), -1)
      z = z + (w @ sh(v)).transpose(1, 2).reshape(-1, t_len, d) @ p[f'o{l}']
      a = norm(z)
      z = z + torch.relu(a @ p[f'up{l}'] + p[f'upb{l}']) @ p[f'down{l}'] + p[f'downb{l}']
    return torch.nn.functional.cross_entropy((norm(z) @ p['unemb']).reshape(-1, 8),
                                             y.reshape(-1))

  t0 = time.perf_counter()
  loss = None
  for seed in range(runs):
    p = init(seed)
    opt = torch.optim.SGD(list(p.values()), lr=0.1)
    for _ in range(steps):
      opt.zero_grad()
      loss = forward(p)
      loss.backward()
      opt.step()
  wall = time.perf_counter() - t0
  return {'runs': runs, 'steps': steps, 'wall_s': round(wall, 2),
          'us_per_run_step': round(wall / (runs * steps) * 1e6, 2),
          'torch': torch.__version__, 'threads': torch.get_num_threads(),
          'last_loss': float(loss.detach())}


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  cli.set_cpu_devices(FLAGS.cpu_devices)
  import jax
  out = {'date': time.strftime('%Y-%m-%d'), 'machine': platform.platform(),
         'processor': platform.processor(), 'cpu_count': os.cpu_count(),
         'jax': jax.__version__, 'devices': [str(d) for d in jax.devices()],
         'loadavg_before': os.getloadavg()}
  out['compile_s'] = bench_compile(FLAGS.runs)
  print('compile_s', out['compile_s'], flush=True)
  with tempfile.TemporaryDirectory() as root:
    out['vmapped'] = bench_sweep(FLAGS.runs, FLAGS.steps, root)
    print('vmapped', out['vmapped'], flush=True)
    out['vmapped_small'] = bench_sweep(FLAGS.small_runs, FLAGS.steps, root)
    print('vmapped_small', out['vmapped_small'], flush=True)
    out['sequential'] = bench_sequential(FLAGS.seq_runs or FLAGS.runs, FLAGS.steps, root)
    print('sequential', out['sequential'], flush=True)
  out['torch_eager'] = bench_torch(FLAGS.torch_runs, FLAGS.torch_steps)
  print('torch_eager', out['torch_eager'], flush=True)
  v = out['vmapped']['us_per_run_step']
  out['ratios'] = {
      'sequential_over_vmapped': round(out['sequential']['us_per_run_step'] / v, 2),
      'small_over_large_per_run_step': round(out['vmapped_small']['us_per_run_step'] / v, 2)}
  if out['torch_eager']:
    out['ratios']['torch_over_vmapped'] = round(out['torch_eager']['us_per_run_step'] / v, 2)
  out['loadavg_after'] = os.getloadavg()  # other jobs on the machine skew timings
  print(json.dumps(out['ratios']))
  with open(FLAGS.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
