"""The cost table: what each item of the instrument costs in a whole job
(`python -m tinyjax.bench --cost_table`; docs/benchmarks.md).

Per case (the default Timmy config, RUNS x STEPS), in one process, each job
compiled from scratch (jit's caches and the persistent compilation cache off):

  switched off  the whole job (train.train_and_evaluate) with one item off,
                alternated with the full job (--repeats: medians; every other
                repetition runs the jobs in the reverse order); the item's
                cost is full - without. Exact up to the run-to-run spread,
                except that an item switched off may also change what XLA
                fuses around it.
  compilation   jax.monitoring's durations in the full job, per jitted
                function: tracing, lowering to MLIR, XLA compilation. The
                chunk compiles on a side thread while init compiles, and the
                end-of-run decoding on another while the chunks run, so
                parts of them overlap.
  profiled      host calls of the full job, timed where they are made: the
                end-of-run generation (compilation included), the sweep
                report, summary writes, the checks before training.

Every job records wall and CPU seconds (this process, all threads): on a
shared machine the CPU seconds are the steadier A/B figure. And the load
other processes put on the machine meanwhile (as tinyjax.bench's: a table
with a job during which they used more than LOADED_OTHER_CORES cores is
marked `under_load`, "UNDER LOAD" when printed).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time

# A step that never comes: evaluation never runs (its program is still compiled).
NEVER = 10 ** 9
LENSES = ('attention', 'probe', 'copying', 'geometry', 'icl', 'fourier')

# key -> (the item, config overrides (dotted paths) that switch it off).
ITEMS = {
    'lenses': ('step lenses (all)', {f'lenses.{k}': False for k in LENSES}),
    'attention': ('lens: attention', {'lenses.attention': False}),
    'probe': ('lens: probe', {'lenses.probe': False}),
    'copying': ('lens: copying', {'lenses.copying': False}),
    'geometry': ('lens: geometry', {'lenses.geometry': False}),
    'eval': ('evaluation every 50 steps (held-out loss + tracked generations)',
             {'eval.steps': (NEVER,), 'eval.track_generations': False}),
    'tracked': ('tracked generations (in the evaluation)', {'eval.track_generations': False}),
    'checkpoints': ('checkpoints but the final one', {'checkpoint.every': 0,
                                                      'checkpoint.log_spaced': False}),
    'files': ('per-run files + TensorBoard', {'output.per_run_files': 0,
                                              'output.sample_seeds': 0,
                                              'output.across_seeds': False}),
}
BARE = {'output.minimal': True}


def with_overrides(cfg, overrides: dict):
  cfg = cfg.copy_and_resolve_references()
  with cfg.unlocked():
    for path, value in overrides.items():
      *parents, leaf = path.split('.')
      node = cfg
      for p in parents:
        node = node[p]
      node[leaf] = value
  return cfg


def _cpu():
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


# Other processes using more cores than this during a measurement: under load
# (its timings are upper bounds; tinyjax.bench and the cost table mark it).
LOADED_OTHER_CORES = 0.2


def _busy_cpu_seconds():
  """CPU seconds the whole machine has been busy (Linux /proc/stat), or None."""
  try:
    with open('/proc/stat') as f:
      user, nice, system, _, _, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
  except (OSError, ValueError):
    return None
  return (user + nice + system + irq + softirq + steal) / os.sysconf('SC_CLK_TCK')


def measured(fn):
  """(fn()'s result, the machine's load during it): load averages before and
  after, and the cores other processes kept busy on average."""
  before, busy, own, t = os.getloadavg(), _busy_cpu_seconds(), _cpu(), time.perf_counter()
  out = fn()
  wall = time.perf_counter() - t
  busy_after = _busy_cpu_seconds()
  other = (None if busy is None or busy_after is None else
           max(0.0, (busy_after - busy) - (_cpu() - own)) / max(wall, 1e-9))
  return out, {'loadavg_before': [round(x, 2) for x in before],
               'loadavg_after': [round(x, 2) for x in os.getloadavg()],
               'other_cores': None if other is None else round(other, 2)}


def under_load(loads) -> bool:
  """Whether other processes kept more than LOADED_OTHER_CORES cores busy
  during any of these measurements (measured's loads; None: not known)."""
  return any((l['other_cores'] or 0) > LOADED_OTHER_CORES for l in loads)


@contextlib.contextmanager
def _compile_log(done_at=None):
  """{event: {function: seconds}} of the jit compilations inside the block;
  done_at (a dict, if given) gets '<event> <function>': seconds from the
  block's start to that event's last end (the compile path of a job: when
  the chunk was traced, lowered, compiled)."""
  import jax
  from jax._src import dispatch
  names = {dispatch.JAXPR_TRACE_EVENT: 'trace', dispatch.JAXPR_TO_MLIR_MODULE_EVENT: 'lower',
           dispatch.BACKEND_COMPILE_EVENT: 'compile'}
  log = {v: {} for v in names.values()}
  start = time.perf_counter()

  def listen(event, seconds, fun_name='?', **_):
    if event in names:
      d = log[names[event]]
      d[fun_name] = d.get(fun_name, 0.0) + seconds
      if done_at is not None and seconds >= 0.05:
        done_at[f'{names[event]} {fun_name}'] = time.perf_counter() - start
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield log
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


@contextlib.contextmanager
def _profiled():
  """{call: {'seconds', 'cpu_seconds', 'calls', 'first_done_at'}} of the host
  calls of train_and_evaluate worth naming: wall seconds, and the CPU seconds
  of the calling thread (time.thread_time: the host's own work, not the
  device's, which a wait for the device shows only as wall time); when the
  first call ended, in seconds from the block's start (the first chunk's
  landing: the end of the job's compile path)."""
  from tinyjax import extend
  from tinyjax import loop
  from tinyjax import memory
  from tinyjax import program as program_lib
  from tinyjax import report
  from tinyjax import train
  from tinyjax import writer
  spent: dict[str, dict] = {}
  patches = [(program_lib.Program, 'generations', 'end-of-run generation'),
             (report, 'write', 'sweep report (report.md, sweep.png)'),
             (train, 'write_summary', 'summary.json writes'),
             (memory, 'check', 'memory check before compiling'),
             (extend, 'check', 'contract checks (shapes)'),
             (train, 'prepare_workdir', 'workdir preparation'),
             (loop.Chunks, 'land', 'chunk landing (main thread: fetch rows, queue writes)'),
             (loop.Chunks, 'save', 'checkpoint saves queued (main thread)'),
             (loop.Chunks, '_save', 'checkpoint saves (writer thread; orbax writes on its own)'),
             (loop.Writers, 'write_rows', 'metric rows flattened and written (writer thread)'),
             (loop.Writers, 'write_lenses', 'checkpoint lens rows written (writer thread)'),
             (writer.AsyncWriter, 'flush', 'writer flushes waited for (main thread)')]
  saved = []
  start = time.perf_counter()
  for owner, attr, name in patches:
    fn = getattr(owner, attr, None)
    if fn is None:  # (an older tinyjax measured with this table)
      continue
    saved.append((owner, attr, fn))

    def timed(*a, _fn=fn, _name=name, **k):
      t, c = time.perf_counter(), time.thread_time()
      try:
        return _fn(*a, **k)
      finally:
        d = spent.setdefault(_name, {'seconds': 0.0, 'cpu_seconds': 0.0, 'calls': 0,
                                     'first_done_at': time.perf_counter() - start})
        d['seconds'] += time.perf_counter() - t
        d['cpu_seconds'] += time.thread_time() - c
        d['calls'] += 1
    setattr(owner, attr, timed)
  try:
    yield spent
  finally:
    for owner, attr, fn in saved:
      setattr(owner, attr, fn)


def job(cfg, workdir: str, log_compiles: bool = False) -> dict:
  """One whole job, compiled from scratch: wall and CPU seconds (and, with
  log_compiles, the compilation log and the profiled host calls)."""
  import jax
  from tinyjax import train
  train._PROGRAMS.clear()
  jax.clear_caches()
  done_at = {}
  with _compile_log(done_at) as comp, _profiled() as prof:
    t, c = time.perf_counter(), _cpu()
    train.train_and_evaluate(cfg, workdir, overwrite=True, progress=False)
    out = {'seconds': time.perf_counter() - t, 'cpu_seconds': _cpu() - c}
  out['compile_seconds'] = sum(sum(d.values()) for d in comp.values())
  if log_compiles:
    out['compile'] = comp
    out['compile_done_at'] = done_at
    out['profiled'] = prof
  return out


def plain_job(cfg, plain_loop) -> dict:
  import jax
  jax.clear_caches()
  t, c = time.perf_counter(), _cpu()
  plain_loop(cfg, shard=True)
  return {'seconds': time.perf_counter() - t, 'cpu_seconds': _cpu() - c}


def table(cfg, root: str, plain_loop, repeats: int = 1, items: dict | None = None) -> dict:
  """The cost table of one case (see the module docstring); plain_loop:
  tinyjax.bench.plain_loop (passed in: bench runs as __main__)."""
  import jax
  import numpy as np
  items = ITEMS if items is None else items
  runs, steps = cfg.sweep.seeds, cfg.train.steps
  persistent = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)  # every job compiles
  jobs = {'full': lambda: job(cfg, os.path.join(root, 'full'), log_compiles=True),
          **{k: (lambda o=o: job(with_overrides(cfg, o), os.path.join(root, 'off')))
             for k, (_, o) in items.items()},
          'bare mode (output.minimal)': lambda: job(with_overrides(cfg, BARE),
                                                    os.path.join(root, 'bare')),
          'plain JAX loop, sharded': lambda: plain_job(cfg, plain_loop)}
  runs_of = {k: [] for k in jobs}
  try:
    for i in range(repeats):  # alternated, every other repetition in the
      for k, fn in list(jobs.items())[::-1 if i % 2 else 1]:  # reverse order: drift favours no job
        result, load = measured(fn)
        runs_of[k].append({**result, 'load': load})
  finally:
    jax.config.update('jax_enable_compilation_cache', persistent)
  med = lambda k, f: float(np.median([m[f] for m in runs_of[k]]))
  whole, whole_cpu = med('full', 'seconds'), med('full', 'cpu_seconds')
  full = runs_of['full'][-1]
  rnd = lambda x: round(x, 2)
  out = {'runs': runs, 'steps': steps, 'repeats': repeats,
         'devices': [str(d) for d in jax.devices()],
         'whole': {'seconds': rnd(whole), 'cpu_seconds': rnd(whole_cpu)},
         'jobs': {k: {'seconds': rnd(med(k, 'seconds')), 'cpu_seconds': rnd(med(k, 'cpu_seconds')),
                      'all_seconds': [rnd(m['seconds']) for m in v],
                      'load': [m['load'] for m in v]}
                  for k, v in runs_of.items()},
         'items': {}, 'compile': {}, 'profiled': {}}
  out['under_load'] = under_load(m['load'] for v in runs_of.values() for m in v)
  for k in items:
    s, c = whole - med(k, 'seconds'), whole_cpu - med(k, 'cpu_seconds')
    out['items'][k] = {'item': items[k][0], 'seconds': rnd(s), 'share': round(s / whole, 3),
                       'cpu_seconds': rnd(c), 'method': 'switched off'}
  for stage, funs in full['compile'].items():
    for fun, s in funs.items():
      if s >= 0.05:
        out['compile'].setdefault(fun, {})[stage] = rnd(s)
  comp = sum(sum(v.values()) for v in full['compile'].values())
  out['compile_total'] = {'seconds': rnd(comp), 'share': round(comp / whole, 3),
                          'method': 'jax.monitoring (per function: trace, lower, compile)'}
  for name, d in full['profiled'].items():
    out['profiled'][name] = {'seconds': rnd(d['seconds']), 'share': round(d['seconds'] / whole, 3),
                             'cpu_seconds': rnd(d['cpu_seconds']), 'calls': d['calls'],
                             'method': 'timed host call (CPU s: its thread\'s)'}
  for k in ('bare mode (output.minimal)', 'plain JAX loop, sharded'):
    out['jobs'][k]['ratio_full_to_it'] = round(whole / med(k, 'seconds'), 3)
  out['ratio'] = {'full_vs_plain': round(whole / med('plain JAX loop, sharded', 'seconds'), 3),
                  'bare_vs_plain': round(med('bare mode (output.minimal)', 'seconds')
                                         / med('plain JAX loop, sharded', 'seconds'), 3)}
  return out


def describe(t: dict) -> str:
  """The printed table of one case."""
  w = t['whole']
  lines = [f"{t['runs']} runs x {t['steps']} steps, default Timmy config: whole job "
           f"{w['seconds']} s ({w['cpu_seconds']} CPU s)",
           f"  {'item':<52} {'seconds':>8} {'share':>6} {'CPU s':>7}  how"]
  row = lambda name, d: (f"  {name:<52} {d['seconds']:>8} {d['share']:>6.1%} "
                         f"{d.get('cpu_seconds', ''):>7}  {d['method']}")
  for k, d in t['items'].items():
    lines.append(row(d['item'], d))
  lines.append(row('compilation (all programs)', {**t['compile_total'], 'cpu_seconds': ''}))
  for fun, d in sorted(t['compile'].items(), key=lambda kv: -sum(kv[1].values())):
    lines.append(f"    {fun:<50} " + ', '.join(f'{k} {v} s' for k, v in d.items()))
  for k, d in t['profiled'].items():
    lines.append(row(k, d))
  for k in ('bare mode (output.minimal)', 'plain JAX loop, sharded'):
    d = t['jobs'][k]
    lines.append(f"  {k:<52} {d['seconds']:>8} s whole ({d['cpu_seconds']} CPU s)")
  lines.append(f"  ratio to the sharded plain loop: full {t['ratio']['full_vs_plain']}x, "
               f"bare {t['ratio']['bare_vs_plain']}x")
  if t.get('under_load'):
    lines.append(f'  UNDER LOAD: other processes used more than {LOADED_OTHER_CORES} cores '
                 'during a job (its timings are upper bounds)')
  return '\n'.join(lines)
