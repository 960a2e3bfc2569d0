"""Time to the first training step, broken down: where a start spends its time.

  python experiments/first_step.py [--configs tiny_llm,guppylm,pillmish] [--repeats 1]
      [--out experiments/results/first_step.json]
  python experiments/first_step.py --table experiments/results/first_step.json

For each config: a child process runs `python -m tinyjax.run --config
configs/<name>.py` exactly as tinyjax.run does (tinyjax.api.train, a fresh
workdir) and exits as soon as step 0 has run (the first chunk, run for one
step); first with an EMPTY persistent compilation cache (a fresh folder
given as $TINYJAX_COMPILATION_CACHE: never the shared user cache), then again
with that folder filled (a rerun). Per start it records:

  wall_s        seconds from spawning the child to its first step done
  cpu_s         the child's CPU seconds (user + system, every thread), from
                the kernel (os.wait4): the figure that load does not inflate
  phases        wall and process-CPU seconds of each phase, in order:
                imports, config (load + validate + sweep), task (corpus,
                tokenizer, windows), program (tinyjax.program.Program),
                checks (contracts and memory, by shapes), workdir, place
                (checkpoint manager, init compiled and run), writers, chunk
                (trace + lower + compile-or-load + step 0), and before the
                imports the interpreter's own start (wall only)
  programs      per jitted function (JAX's fun_name): trace, lower and
                backend compile-or-load seconds (wall, and the CPU of the
                thread that did it), and on which thread (a side thread's
                work is off the critical path but shares the two cores)
  cache_hits / cache_misses   JAX's persistent-cache events

Timings on a shared machine are upper bounds; compare CPU seconds there.
The JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIGS = {'tiny_llm': 'configs/tiny_llm.py', 'guppylm': 'configs/guppylm.py',
           'pillmish': 'configs/pillmish.py'}
EVENTS = {'/jax/core/compile/jaxpr_trace_duration': 'trace',
          '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower',
          '/jax/core/compile/backend_compile_duration': 'compile'}


# ------------------------------------------------------------------ child ---
def child(config_path, workdir, t_spawn):
  """Trains config_path as tinyjax.run does; prints FIRST_STEP {json} and
  exits as soon as step 0 has run."""
  t0, c0 = time.time(), time.process_time()
  phases = [('interpreter', t0 - t_spawn, None)]
  last = [t0, c0]

  def mark(name):
    t, c = time.time(), time.process_time()
    phases.append((name, t - last[0], c - last[1]))
    last[:] = [t, c]

  if os.environ.get('FIRST_STEP_PROFILE'):  # cProfile of the main thread, to that file
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
  sys.argv = ['tinyjax.run']  # as `python -m tinyjax.run` (absl parses nothing here)
  import tinyjax.run  # noqa: F401  (its imports, as the command makes them)
  from tinyjax import cli
  cli.set_cpu_devices(0)
  from tinyjax import api
  from tinyjax import faults  # noqa: F401
  from tinyjax import loop
  from tinyjax import train
  import jax
  mark('imports')

  programs, cache = {}, {'cache_hits': 0, 'cache_misses': 0}
  starts = {}  # (thread, event) -> thread CPU at the event's start

  def on_scalar(event, value, **kw):  # JAX records each compile stage's start time
    if event in EVENTS:
      starts[(threading.get_ident(), event)] = time.thread_time()

  def on_duration(event, secs, fun_name='?', **_):
    if event not in EVENTS:
      return
    cpu = time.thread_time() - starts.pop((threading.get_ident(), event), time.thread_time())
    side = threading.current_thread() is not threading.main_thread()
    p = programs.setdefault(fun_name + (' (side thread)' if side else ''), {})
    stage = EVENTS[event]
    p[stage + '_s'] = p.get(stage + '_s', 0.0) + secs
    p[stage + '_cpu_s'] = p.get(stage + '_cpu_s', 0.0) + cpu

  def on_event(event, **_):
    for k in cache:
      if event == f'/jax/compilation_cache/{k}':
        cache[k] += 1
  jax.monitoring.register_scalar_listener(on_scalar)
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)

  def timed(obj, attr, name):
    real = getattr(obj, attr)

    def wrapper(*a, **k):
      out = real(*a, **k)
      mark(name)
      return out
    setattr(obj, attr, wrapper)

  real_build, real_prog = train.build_task, train.program_for

  def build_task(*a, **k):
    if not any(p[0] == 'config' for p in phases):
      mark('config')
    out = real_build(*a, **k)
    mark('task')
    return out

  def program_for(config, task):
    prog = real_prog(config, task)
    mark('program')
    if getattr(prog, '_first_step_wrapped', False):
      return prog
    real_chunk = prog.chunk

    def first(state, hp, data, start, n):
      mark('writers')
      # A step with no evaluation first (the first training step), then the
      # run's own step 0 with the evaluation it has (tiny-llm: 2 x 50 batches).
      out = real_chunk(state, hp, data, _plain_step(config), 1)
      jax.block_until_ready(out)
      mark('chunk')
      out = real_chunk(state, hp, data, start, 1)
      jax.block_until_ready(out)
      mark('step 0 with its evaluation')
      if os.environ.get('FIRST_STEP_PROFILE'):
        profile.disable()
        profile.dump_stats(os.environ['FIRST_STEP_PROFILE'])
      print('FIRST_STEP ' + json.dumps({'phases': phases, 'programs': programs, **cache}),
            flush=True)
      os._exit(0)
    first.lower = real_chunk.lower  # (tinyjax.loop compiles the chunk ahead with it)
    prog.chunk = first
    prog._first_step_wrapped = True
    return prog

  train.build_task, train.program_for = build_task, program_for
  timed(train, 'check_group', 'checks')
  timed(train, 'prepare_workdir', 'workdir')
  timed(loop, 'place_group', 'place')
  api.train(api.load_config(config_path), workdir, overwrite=True, progress=False)
  raise RuntimeError('trained without a first chunk')


def _plain_step(config) -> int:
  """A step > 0 with no evaluation scheduled: 1, or the next one that is not."""
  every = config.eval.every or config.train.log_every
  steps = set(config.eval.get('steps', ()) or ())
  s = 1
  while (s in steps) if steps else (s % every == 0):
    s += 1
  return s


# ----------------------------------------------------------------- parent ---
def first_step(name, cache_dir):
  """One start of configs/<name>.py with `cache_dir` as the compilation cache."""
  workdir = tempfile.mkdtemp(prefix=f'tinyjax-first-{name}-')
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'),
             TINYJAX_COMPILATION_CACHE=cache_dir, PYTHONPATH=ROOT)
  env.pop('JAX_COMPILATION_CACHE_DIR', None)  # tinyjax's own setting, as a user gets it
  t0 = time.perf_counter()
  p = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--child', CONFIGS[name],
                        workdir, repr(time.time())], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  marks, wall = None, None
  for line in p.stdout:
    if line.startswith('FIRST_STEP '):
      wall = time.perf_counter() - t0
      marks = json.loads(line.split(' ', 1)[1])
  err = p.stderr.read()
  _, status, ru = os.wait4(p.pid, 0)
  p.returncode = os.waitstatus_to_exitcode(status)
  shutil.rmtree(workdir, ignore_errors=True)
  if marks is None:
    raise RuntimeError(f'{name}: no first step:\n{err[-3000:]}')
  return {'wall_s': wall, 'cpu_s': ru.ru_utime + ru.ru_stime, **marks}


def derive(start: dict) -> dict:
  """Adds the figures the docs quote: to the first training step (the phases
  up to 'chunk': wall from the spawn, CPU of the child) and step 0's
  evaluation on its own."""
  upto, seen = [], False
  for p in start['phases']:
    if not seen:
      upto.append(p)
    seen = seen or p[0] == 'chunk'
  start['first_step_wall_s'] = sum(p[1] for p in upto)
  start['first_step_cpu_s'] = sum(p[2] or 0.0 for p in upto)
  last = start['phases'][-1]
  start['eval0_wall_s'], start['eval0_cpu_s'] = last[1], last[2]
  return start


def run(configs, repeats, out):
  result = {'command': 'python experiments/first_step.py ' + ' '.join(sys.argv[1:]),
            'machine': {'cpus': os.cpu_count(), 'processor': platform.processor(),
                        'loadavg_start': os.getloadavg()},
            'python': sys.version.split()[0], 'configs': {}}
  t_all = time.perf_counter()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  for name in configs:
    rounds = []
    for r in range(repeats):
      cache = tempfile.mkdtemp(prefix='tinyjax-cache-')  # empty: a fresh start
      try:
        fresh = first_step(name, cache)
        cached = first_step(name, cache)
      finally:
        shutil.rmtree(cache, ignore_errors=True)
      rounds.append({'fresh': derive(fresh), 'cached': derive(cached)})
      print(f'{name} round {r}: first training step fresh {fresh["first_step_wall_s"]:.1f} s '
            f'({fresh["first_step_cpu_s"]:.1f} CPU s), cached {cached["first_step_wall_s"]:.1f} s '
            f'({cached["first_step_cpu_s"]:.1f} CPU s)', flush=True)
    result['configs'][name] = rounds
    with open(out, 'w') as f:  # after each config: a long run cut short keeps what it measured
      json.dump(result, f, indent=1)
  result['machine']['loadavg_end'] = os.getloadavg()
  result['total_s'] = time.perf_counter() - t_all
  import jax
  result['jax_version'] = jax.__version__
  with open(out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'wrote {out}')
  return result


def compile_parts(config_name, repeats, out):
  """CPU seconds of tracing + lowering and of XLA compiling the config's
  training chunk as configured and in bare mode (output.minimal: every step
  the unlogged step; no evaluation, lens or logged step in the chunk), and of
  its end-of-run evaluation; in this process, no compilation cache. Bare
  mode's chunk bounds what one step variant in the chunk could save."""
  os.environ['TINYJAX_COMPILATION_CACHE'] = 'off'
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P
  from tinyjax import api, loop, program as program_lib, sweep as sweep_lib, train
  result = {'command': 'python experiments/first_step.py ' + ' '.join(sys.argv[1:]),
            'loadavg_start': os.getloadavg(), 'config': CONFIGS[config_name], 'rounds': []}
  for _ in range(repeats):
    for minimal in (False, True):
      c = api.load_config(os.path.join(ROOT, CONFIGS[config_name]))
      with c.unlocked():
        c.output.minimal = minimal
      g = sweep_lib.expand(c)[0]
      prog = program_lib.Program(g.config, train.build_task(g.config))
      hp_np = program_lib.hparam_arrays([r['hparams'] for r in g.runs])
      mesh = loop.runs_mesh(1)
      shard = NamedSharding(mesh, P('runs'))
      hp = jax.device_put(hp_np, shard)
      data = jax.device_put(prog.data, NamedSharding(mesh, P()))
      state = jax.device_put(prog.init(hp), shard)
      hp = prog.with_init(hp, state)
      t0 = time.process_time()
      lowered = prog.chunk.lower(state, hp, data, 0, 1)
      t1 = time.process_time()
      lowered.compile()
      t2 = time.process_time()  # (the evaluation is the chunk for zero steps: no program of its own)
      r = {'bare': minimal, 'chunk_trace_lower_cpu_s': t1 - t0, 'chunk_compile_cpu_s': t2 - t1}
      result['rounds'].append(r)
      print(r, flush=True)
  result['loadavg_end'] = os.getloadavg()
  with open(out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'wrote {out}')


def _median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def table(path):
  """docs/benchmarks.md's tables from a stored JSON (medians over rounds)."""
  r = json.load(open(path))
  end = r['machine'].get('loadavg_end')
  print(f'Load average {r["machine"]["loadavg_start"][0]:.1f} at the start, '
        + (f'{end[0]:.1f} at the end.\n' if end else 'cut short before the end.\n'))
  for rounds in r['configs'].values():
    for x in rounds:
      for start in x.values():
        if 'first_step_cpu_s' not in start:
          derive(start)
  print('| config | first training step, fresh (wall / CPU s) | with the cache (wall / CPU s) '
        '| then step 0\'s evaluation (CPU s) | cache hits (cached run) |')
  print('|---|---|---|---|---|')
  for name, rounds in r['configs'].items():
    med = lambda kind, k: _median([x[kind][k] for x in rounds])
    last = rounds[-1]['cached']
    print(f'| {name} | {med("fresh", "first_step_wall_s"):.1f} / {med("fresh", "first_step_cpu_s"):.1f} '
          f'| {med("cached", "first_step_wall_s"):.1f} / {med("cached", "first_step_cpu_s"):.1f} '
          f'| {med("cached", "eval0_cpu_s"):.1f} | {last["cache_hits"]} of '
          f'{last["cache_hits"] + last["cache_misses"]} |')
  names = list(r['configs'])
  print('\nPhases, CPU seconds (wall for the interpreter), fresh / cached:\n')
  print('| phase | ' + ' | '.join(names) + ' |')
  print('|---|' + '---|' * len(names))
  order = list(dict.fromkeys(p[0] for p in r['configs'][names[0]][0]['fresh']['phases']))
  for phase in order:
    cells = []
    for name in names:
      vals = []
      for kind in ('fresh', 'cached'):
        ph = [p for p in r['configs'][name][0][kind]['phases'] if p[0] == phase]
        v = sum(p[2] if p[2] is not None else p[1] for p in ph)
        vals.append(f'{v:.1f}' if ph else '-')
      cells.append(' / '.join(vals))
    print(f'| {phase} | ' + ' | '.join(cells) + ' |')
  for name in names:
    print(f'\n{name}: per program: trace / lower (CPU s of the thread that did it) / '
          'compile-or-load (wall s; XLA compiles on its own threads), fresh | cached\n')
    print('| program | fresh | cached |')
    print('|---|---|---|')
    fr, ca = r['configs'][name][0]['fresh']['programs'], r['configs'][name][0]['cached']['programs']
    for prog in sorted(fr, key=lambda p: -sum(v for k, v in fr[p].items() if k.endswith('cpu_s'))):
      cell = lambda d: (f'{d.get("trace_cpu_s", 0):.2f} / {d.get("lower_cpu_s", 0):.2f} / '
                        f'{d.get("compile_s", 0):.2f}')
      print(f'| {prog} | {cell(fr[prog])} | {cell(ca.get(prog, {}))} |')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--configs', default='tiny_llm,guppylm,pillmish')
  ap.add_argument('--repeats', type=int, default=1)
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments/results/first_step.json'))
  ap.add_argument('--table', metavar='JSON', help='print the docs\' tables from a stored JSON')
  ap.add_argument('--compile_parts', metavar='CONFIG',
                  help='instead: the chunk\'s compile CPU as configured and in bare mode')
  ap.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
  a = ap.parse_args()
  if a.child:
    return child(a.child[0], a.child[1], float(a.child[2]))
  if a.compile_parts:
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    return compile_parts(a.compile_parts, a.repeats, a.out)
  if a.table:
    return table(a.table)
  unknown = [c for c in a.configs.split(',') if c not in CONFIGS]
  if unknown:
    raise SystemExit(f'--configs: unknown {unknown}; use {", ".join(CONFIGS)}')
  run(a.configs.split(','), a.repeats, a.out)


if __name__ == '__main__':
  main()
