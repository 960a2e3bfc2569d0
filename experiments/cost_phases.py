"""Where a job's time goes against the plain loop: its start (until the
devices are busy), its device phase and its tail, and the CPU seconds of each
thread, for the default Timmy config and the sharded plain-JAX loop of
tinyjax.bench, alternated in one process (compiled cold, as the bench).

  python experiments/cost_phases.py --runs 64 --steps 3000 --repeats 3 --out experiments/results/cost_phases_64x3000.json

Each thread's CPU time is read from /proc/self/task every --interval seconds
(Linux only). The device phase is the longest stretch in which XLA:CPU's
compute pool (the `tf_XLAEigen` threads, which run every device's kernels)
used more than one core (of 2), gaps under 0.6 s bridged; the start is the
job's time before it, the tail its time after it. The pool's threads also
spin while they wait for work, so their CPU seconds fill the idle cores: read
the other threads' CPU (what the host did) and the phases' lengths, not the
pool's CPU: `thread_cpu` over the whole job, `thread_cpu_by_phase` split at
the phases' bounds. Also the compile stages' end times (jax.monitoring's trace,
lowering and backend compile durations, stamped when each ended).

Also, when --chunks_alone: the job's own chunk program, compiled ahead, run
for the same steps in chunks of `train.chunk_steps` from the initial state,
with nothing else in the process, and the plain loop's scan compiled ahead:
the devices' time for the same steps outside a job.
"""

import argparse
import collections
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

BUSY_CORES = 1.0  # the compute pool above this many cores: the devices are busy
BRIDGE_S = 0.6    # shorter gaps between busy samples belong to one phase


class Sampler:
  """Every thread's CPU seconds, every `interval` s, on a daemon thread."""

  def __init__(self, interval: float, start: bool = True):
    self.interval, self.tick = interval, os.sysconf('SC_CLK_TCK')
    self.samples = []  # (time, {tid: cpu seconds})
    self.names = {}    # tid -> a name: Python's thread name, else the OS's
    if start:
      threading.Thread(target=self._loop, daemon=True, name='cost-phases-sampler').start()

  def read(self):
    cpu = {}
    for tid in os.listdir('/proc/self/task'):
      try:
        with open(f'/proc/self/task/{tid}/stat') as f:
          s = f.read()
      except OSError:
        continue
      fields = s[s.rindex(')') + 2:].split()
      cpu[int(tid)] = (int(fields[11]) + int(fields[12])) / self.tick
      self.names.setdefault(int(tid), s[s.index('(') + 1:s.rindex(')')])
    for t in threading.enumerate():
      if t.native_id:
        self.names[t.native_id] = ('main thread' if t is threading.main_thread()
                                   else re.sub(r'Thread-\d+ ', '', t.name))
    return time.perf_counter(), cpu

  def _loop(self):
    while True:
      self.samples.append(self.read())
      time.sleep(self.interval)

  def window(self, t0: float, t1: float) -> dict:
    """Phases and per-thread CPU of [t0, t1]."""
    s = [x for x in self.samples if t0 - self.interval <= x[0] <= t1] + [self.read()]
    return self.phases(s, t0, t1)

  def phases(self, s, t0: float, t1: float) -> dict:
    """{'phases': start, device and tail seconds (None if the pool was never
    busy), 'thread_cpu': CPU seconds per thread name, and where there is a
    device phase 'thread_cpu_by_phase': the same per phase} of samples s."""
    pool = lambda cpu: sum(c for tid, c in cpu.items() if 'XLAEigen' in self.names.get(tid, ''))
    busy = [s[i][0] for i in range(1, len(s))
            if (pool(s[i][1]) - pool(s[i - 1][1])) / (s[i][0] - s[i - 1][0]) > BUSY_CORES]
    phase = None
    if busy:
      stretches, a, b = [], busy[0], busy[0]
      for t in busy[1:]:
        if t - b > BRIDGE_S:
          stretches.append((a, b))
          a = t
        b = t
      stretches.append((a, b))
      a, b = max(stretches, key=lambda r: r[1] - r[0])
      phase = {'start': round(a - t0, 2), 'device': round(b - a, 2), 'tail': round(t1 - b, 2)}
    by = self._by_name(s[0][1], self._known(s, s[-1][0]))
    out = {'phases': phase, 'thread_cpu': by}
    if phase is not None:  # each thread's CPU seconds in each phase
      bounds = [s[0][0], a, b, s[-1][0]]
      out['thread_cpu_by_phase'] = {
          k: self._by_name(self._known(s, t), self._known(s, u))
          for k, t, u in zip(('start', 'device', 'tail'), bounds, bounds[1:])}
    return out

  @staticmethod
  def _known(s, t: float) -> dict:
    """{tid: CPU seconds} at the last sample at or before t (a thread that
    ended before it: its last reading)."""
    known = {}
    for when, cpu in s:
      if when > t:
        break
      known.update(cpu)
    return known

  def _by_name(self, first: dict, last: dict) -> dict:
    """CPU seconds from `first` to `last` per thread name (numbers folded)."""
    by = collections.Counter()
    for tid, c in last.items():
      name = re.sub(r'\d+', '#', self.names.get(tid, '?'))
      by['XLA compute pool (spins when idle)' if 'XLAEigen' in name else name] += (
          c - first.get(tid, 0.0))
    return {k: round(v, 2) for k, v in by.most_common() if v >= 0.01}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--runs', type=int, default=64)
  p.add_argument('--steps', type=int, default=3000)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--interval', type=float, default=0.1)
  p.add_argument('--chunks_alone', action='store_true')
  p.add_argument('--out', default='cost_phases.json')
  args = p.parse_args()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  import jax.monitoring
  from tinyjax import bench, cost
  jax.config.update('jax_enable_compilation_cache', False)  # cold, as the bench
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, d, **kw: events.append((time.perf_counter(), name.rsplit('/', 1)[-1], d)))
  sampler = Sampler(args.interval)
  cfg = bench.timmy(args.runs, args.steps)
  root = tempfile.mkdtemp()
  jobs = {'tinyjax': lambda i: bench.run_tinyjax(cfg, os.path.join(root, str(i))),
          'plain': lambda i: bench.plain_loop(cfg, shard=True)}
  if args.chunks_alone:
    jobs.update(alone_jobs(cfg))
  out = {k: [] for k in jobs}
  for i in range(args.repeats):
    for name in (list(jobs) if i % 2 == 0 else list(jobs)[::-1]):
      if name in ('tinyjax', 'plain'):  # compiled cold; the alone ones are compiled ahead
        jax.clear_caches()
      del events[:]
      t0 = time.perf_counter()
      (_, l) = bench.measured(lambda: jobs[name](i))
      t1 = time.perf_counter()
      time.sleep(3 * args.interval)
      r = {'seconds': round(t1 - t0, 2), **sampler.window(t0, t1), 'load': l,
           'compile_stages_done_at': [(round(t - t0, 2), n, round(d, 2)) for t, n, d in events
                                      if d >= 0.05 and n.endswith(('trace_duration',
                                                                   'mlir_module_duration',
                                                                   'backend_compile_duration'))]}
      out[name].append(r)
      print(name, r['seconds'], r['phases'], flush=True)
  med = lambda name, k: statistics.median(r['phases'][k] for r in out[name] if r['phases'])
  summary = {name: {k: med(name, k) for k in ('start', 'device', 'tail')} for name in out}
  res = {'runs': args.runs, 'steps': args.steps, 'repeats': args.repeats,
         'date': time.strftime('%Y-%m-%d %H:%M'), 'devices': [str(d) for d in jax.devices()],
         'under_load': cost.under_load(r['load'] for v in out.values() for r in v),
         'median_phases': summary, 'jobs': out}
  with open(args.out, 'w') as f:
    json.dump(res, f, indent=1)
  print(json.dumps(summary, indent=1))
  print(f'wrote {args.out}')


def alone_jobs(cfg) -> dict:
  """The job's chunk program and the plain loop's scan, each compiled ahead:
  {'chunks alone': fn(i), 'plain scan alone': fn(i)} that run cfg's steps."""
  import jax
  from tinyjax import bench, loop, sweep as sweep_lib, train
  group = sweep_lib.expand(cfg)[0]
  prog = train.program_for(group.config, train.build_task(group.config))
  g = loop.place_group(group, prog, tempfile.mkdtemp())
  steps, every = cfg.train.steps, cfg.train.chunk_steps
  chunk = prog.chunk.lower(g.state, g.hp, g.data, 0, every).compile()
  init, _, step = bench.plain_parts(cfg)
  carry = jax.jit(jax.vmap(init))(bench.plain_seeds(cfg.sweep.seeds, shard=True))
  scan = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps)).lower(carry).compile()

  def chunks(_):
    state = g.state
    for s in range(0, steps, every):
      state, rows = chunk(state, g.hp, g.data, s, min(every, steps - s))
    return jax.block_until_ready((state, rows))
  return {'chunks alone': chunks, 'plain scan alone': lambda _: jax.block_until_ready(scan(carry))}


if __name__ == '__main__':
  main()
