"""Writes metric rows off the training thread.

Per group of runs (WORKDIR/[GROUP/]):
  metrics/STEP.pK.npz   every run's rows of one chunk, columnar: '__step__' [G],
                        '__run__' [R] (run index in the group), one [G, R] float32
                        array per metric (K: the process that wrote it);
  lenses/STEP.pK.npz    the same for the checkpoint lenses' rows;
  across_seeds/COND/STAT/  TensorBoard: STAT = mean, p10, p50, p90 over the seeds of
                        each condition (e.g. lr=0.1), one TensorBoard run per
                        statistic with the plain metric tags, so that one chart
                        per metric overlays the four lines;
and per run (RUN/: every run of a group up to `output.per_run_files` runs,
else the first `output.sample_seeds` seeds of each condition):
  metrics.jsonl, lenses.jsonl and a TensorBoard event file.
tinyjax.results.load reads the columnar files back as one table.

The host loop hands over whole chunks of rows (numpy, already on the host) and
goes back to the device at once; a background thread formats and writes them.
`flush()` blocks until everything handed over is on disk. The loop queues each
checkpoint's save on this thread too, behind the rows before it: a checkpoint
never runs ahead of its metrics, and the training thread never waits for them.

A failed write (a full disk, a workdir that became read-only) stops the thread's
writing; the error is raised on the training thread at its next submit, flush
or close. Event files are written on this thread too (EventFile), not on
tensorboardX's own thread: that one dies silently on a full disk, after which
every write blocks on its full queue and the run never ends.
"""

from __future__ import annotations

import glob
import json
import math
import os
import queue
import sys
import threading
import time

import numpy as np


def _import_tensorboardx():
  """Imports tensorboardX without torch. Its package __init__ imports its
  SummaryWriter, which imports torch when torch is installed (the interop
  extras install it): 2.5 s of CPU before a run's first step, for a writer
  tinyjax does not use (EventFile below writes the events). torch is hidden
  only for this import when nothing imported it yet; a later `import torch`
  works as usual."""
  if 'tensorboardX' in sys.modules or 'torch' in sys.modules:
    return
  sys.modules['torch'] = None  # `import torch` raises ImportError: tensorboardX's fallback
  try:
    import tensorboardX  # noqa: F401
  finally:
    if 'torch' in sys.modules and sys.modules['torch'] is None:
      del sys.modules['torch']


_import_tensorboardx()
from tensorboardX.event_file_writer import EventsWriter  # noqa: E402
from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402
from tensorboardX.proto.summary_pb2 import Summary  # noqa: E402
from tensorboardX.summary import hparams as tb_hparams  # noqa: E402
from tensorboardX.summary import image as tb_image  # noqa: E402


def read_jsonl(path: str) -> list[dict]:
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          break  # a torn last line from a crash
  return rows


def truncate_jsonl(path: str, before_step: int):
  """Keeps rows with step < before_step (resume from a checkpoint there)."""
  rows = [r for r in read_jsonl(path) if r['step'] < before_step]
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    for r in rows:
      f.write(json.dumps(r) + '\n')
  os.replace(tmp, path)


def _clean(v):
  return v if math.isfinite(v) else None


OUTPUT_DEFAULTS = {
    'per_run_files': 16,   # groups up to this many runs: files for every run;
    'sample_seeds': 4,     # bigger groups: for this many seeds per condition;
    'across_seeds': True,  # TensorBoard mean and quantiles over seeds per condition.
    'minimal': False,      # bare mode: the loss rows (columnar files) and checkpoints only.
}
QUANTILES = (10, 50, 90)
STATS = ('mean', *(f'p{q}' for q in QUANTILES))  # seed_stats' keys: across_seeds/COND/STAT


def output_settings(config) -> dict:
  out = {**OUTPUT_DEFAULTS, **dict(config.get('output', {}))}
  if out['minimal']:  # bare mode: no per-run files, no TensorBoard
    out.update(per_run_files=0, sample_seeds=0, across_seeds=False)
  return out


def condition_name(rel_name: str) -> str:
  """A run's condition: its name without the seed ('lr=0.1/seed=3' -> 'lr=0.1')."""
  return '/'.join(p for p in rel_name.split('/') if not p.startswith('seed=')) or 'all'


def conditions(rel_names: list[str]) -> dict[str, list[int]]:
  """{condition: indices of its runs}, in run order."""
  out: dict[str, list[int]] = {}
  for i, n in enumerate(rel_names):
    out.setdefault(condition_name(n), []).append(i)
  return out


def file_runs(rel_names: list[str], settings: dict) -> list[int]:
  """The runs of a group that get their own metrics.jsonl and event file."""
  if len(rel_names) <= settings['per_run_files']:
    return list(range(len(rel_names)))
  return sorted(i for idx in conditions(rel_names).values()
                for i in idx[:settings['sample_seeds']])


def _close_all(calls):
  """Calls each (flush, close, ...) even when one fails; raises the first error."""
  error = None
  for call in calls:
    try:
      call()
    except (OSError, ValueError) as e:  # ValueError: a file closed before
      error = error or e
  if error is not None:
    raise error


def _fsync_write(path: str, write):
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class EventFile:
  """A TensorBoard event file written by the calling thread (the writer's), so
  that a failed write raises where it can be handled. The events are those
  tensorboardX's SummaryWriter writes: purge_step, as there, hides the events
  of steps >= purge_step that an earlier, interrupted run wrote."""

  FLUSH_SECS = 30

  def __init__(self, logdir: str, purge_step: int | None = None):
    os.makedirs(logdir, exist_ok=True)
    self.events = EventsWriter(os.path.join(logdir, 'events'))
    self.last_flush = time.time()
    if purge_step is not None:
      self._add(Event(step=purge_step, file_version='brain.Event:2'))
      self._add(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

  def _add(self, event):
    event.wall_time = time.time()
    self.events.write_event(event)
    if event.wall_time - self.last_flush > self.FLUSH_SECS:  # TensorBoard sees it live
      self.flush()

  def add_summary(self, summary, step: int | None = None):
    event = Event(summary=summary)
    if step is not None:
      event.step = int(step)
    self._add(event)

  def add_image(self, tag: str, img_HxW, step: int):
    self.add_summary(tb_image(tag, img_HxW, dataformats='HW'), step)

  def flush(self):
    self.events.flush()  # and fsync
    self.last_flush = time.time()

  def close(self):
    _close_all([self.flush, self.events.close])


class Columns:
  """WORKDIR/[GROUP/]{metrics,lenses}/STEP.pK.npz for the runs a process owns."""

  KINDS = ('metrics', 'lenses')

  def __init__(self, group_dir: str, runs_R, start_step: int, process: int = 0,
               clear_all: bool = True):
    """Removes rows a resume from `start_step` redoes: metrics at steps >=
    start, lens rows after it (a resumed checkpoint's own lens row stays);
    of every process when clear_all, else of this one."""
    self.runs_R = np.asarray(runs_R, np.int32)
    self.process = process
    self.dirs = {k: os.path.join(group_dir, k) for k in self.KINDS}
    for kind, d in self.dirs.items():
      for path in glob.glob(os.path.join(d, '*.npz' if clear_all else f'*.p{process}.npz')):
        step = int(os.path.basename(path).split('.')[0])
        if step >= start_step if kind == 'metrics' else (step > start_step or not start_step):
          try:
            os.remove(path)
          except FileNotFoundError:  # process 0 clears every process's files too
            pass

  def write(self, kind: str, steps_G, cols: dict[str, np.ndarray]):
    steps_G = np.asarray(steps_G, np.int64)
    os.makedirs(self.dirs[kind], exist_ok=True)
    path = os.path.join(self.dirs[kind], f'{steps_G[0]:09d}.p{self.process}.npz')
    arrays = {'__step__': steps_G, '__run__': self.runs_R,
              **{k: np.asarray(v, np.float32) for k, v in cols.items()}}
    _fsync_write(path, lambda f: np.savez(f, **arrays))

  def flush(self):  # every file is complete (fsync-ed, renamed) when written
    pass

  close = flush


def read_columns(group_dir: str, kind: str = 'metrics'):
  """Yields (steps_G, runs_R, {metric: [G, R]}) per chunk in step order, the
  files of every process of that chunk joined along the runs axis."""
  by_step: dict[int, list[str]] = {}
  for path in glob.glob(os.path.join(group_dir, kind, '*.npz')):
    by_step.setdefault(int(os.path.basename(path).split('.')[0]), []).append(path)
  for step in sorted(by_step):
    parts = []
    for path in sorted(by_step[step]):
      with np.load(path) as z:
        parts.append({k: z[k] for k in z.files})
    steps_G = parts[0]['__step__']
    runs_R = np.concatenate([p['__run__'] for p in parts])
    names = [k for k in dict.fromkeys(k for p in parts for k in p) if not k.startswith('__')]
    missing = lambda p: np.full((len(steps_G), len(p['__run__'])), np.nan, np.float32)
    yield steps_G, runs_R, {k: np.concatenate([p.get(k, missing(p)) for p in parts], 1)
                            for k in names}


def seed_stats(x_XxR) -> dict[str, np.ndarray]:
  """Mean and QUANTILES (linear interpolation, as np.percentile) over the
  last axis, of the finite values only (NaN where none): one sort for all
  metrics and steps at once (np.nanpercentile loops in Python)."""
  finite = np.isfinite(x_XxR)
  n = finite.sum(-1)
  sorted_XxR = np.sort(np.where(finite, x_XxR, np.inf), axis=-1)
  with np.errstate(invalid='ignore', divide='ignore'):
    out = {'mean': np.where(n > 0, np.where(finite, x_XxR, 0).sum(-1) / n, np.nan)}
  for q in QUANTILES:
    pos = np.maximum(n - 1, 0) * q / 100
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(sorted_XxR, lo[..., None], -1)[..., 0]
    b = np.take_along_axis(sorted_XxR, hi[..., None], -1)[..., 0]
    with np.errstate(invalid='ignore'):
      v = a + (b - a) * (pos - lo)
    out[f'p{q}'] = np.where(n > 0, np.where(a == b, a, v), np.nan)
  return out


class AcrossSeeds:
  """TensorBoard event files of the seeds' mean and quantiles per condition."""

  def __init__(self, group_dir: str, rel_names: list[str], start_step: int):
    self.conds = {c: np.asarray(i) for c, i in conditions(rel_names).items() if len(i) > 1}
    # One TensorBoard run per statistic (across_seeds/COND/p50, ...), each with
    # the metric's own tag: TensorBoard draws the runs that share a tag in one
    # chart, so p10/p50/p90/mean of `loss` are one picture, not four panels.
    # purge_step: a resume drops the events it redoes, as RunWriter does.
    self.tb = {(c, stat): EventFile(os.path.join(group_dir, 'across_seeds', c, stat),
                                    start_step or None)
               for c in self.conds for stat in STATS}

  def write(self, steps_G, cols: dict[str, np.ndarray], runs_R=None):
    """cols: {metric: [G, R]} over the group's runs `runs_R` (default all)."""
    pos = None if runs_R is None else {int(r): j for j, r in enumerate(runs_R)}
    for cond, idx in self.conds.items():
      if pos is not None:
        idx = np.asarray([pos[i] for i in idx if i in pos])
        if len(idx) < 2:
          continue
      names = list(cols)
      x_MxGxR = np.stack([np.asarray(cols[k], np.float64)[:, idx] for k in names])
      for stat, s_MxG in seed_stats(x_MxGxR).items():
        for step, row in zip(steps_G, s_MxG.T.tolist()):  # Python floats: fast to test
          vals = [Summary.Value(tag=n, simple_value=v) for n, v in zip(names, row)
                  if math.isfinite(v)]
          if vals:
            self.tb[cond, stat].add_summary(Summary(value=vals), int(step))

  def flush(self):
    for w in self.tb.values():
      w.flush()

  def close(self):
    _close_all([w.close for w in self.tb.values()])


def across_seeds_from_files(group_dir: str, rel_names: list[str]):
  """Writes across_seeds/ from the columnar files of every process (after a
  multi-process job, where no process held every run while training)."""
  out = AcrossSeeds(group_dir, rel_names, 0)
  for steps_G, runs_R, cols in read_columns(group_dir):
    out.write(steps_G, cols, runs_R)
  out.close()


class RunWriter:
  """metrics.jsonl and a TensorBoard event file for one run."""

  def __init__(self, run_dir: str, start_step: int, hparams: dict, metric_names):
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, 'metrics.jsonl')
    truncate_jsonl(path, start_step)
    self.jsonl = open(path, 'a')
    self.lens_path = os.path.join(run_dir, 'lenses.jsonl')
    if os.path.exists(self.lens_path):  # a resumed checkpoint's own row stays
      truncate_jsonl(self.lens_path, start_step + 1 if start_step else 0)
    self.lens_jsonl = None  # opened by the first checkpoint lens row
    self.tb = EventFile(run_dir, start_step or None)
    if start_step == 0 and hparams:
      for summary in tb_hparams(hparams, {m: 0.0 for m in metric_names}):
        self.tb.add_summary(summary)

  def write(self, step: int, metrics: dict[str, float]):
    self._row(self.jsonl, step, metrics)

  def _row(self, jsonl, step: int, metrics: dict[str, float]):
    jsonl.write(json.dumps({'step': step, **{k: _clean(v) for k, v in metrics.items()}}) + '\n')
    # One event per row with every scalar in it: add_scalar per value costs
    # ~16x more host time, which adds up over hundreds of runs.
    values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()
              if math.isfinite(v)]
    self.tb.add_summary(Summary(value=values), step)

  def write_lenses(self, step: int, metrics: dict[str, float], images=None):
    """A checkpoint's lens row (lenses.jsonl, TensorBoard scalars) and
    attention maps {tag: 2-D array in [0, 1]} as TensorBoard images."""
    if self.lens_jsonl is None:
      self.lens_jsonl = open(self.lens_path, 'a')
    self._row(self.lens_jsonl, step, metrics)
    for tag, img in (images or {}).items():
      self.tb.add_image(tag, img, step)

  def flush(self):
    for f in (self.jsonl, self.lens_jsonl):
      if f is not None:
        f.flush()
        os.fsync(f.fileno())
    self.tb.flush()

  def close(self):
    _close_all([self.flush, self.jsonl.close, self.tb.close]
               + ([self.lens_jsonl.close] if self.lens_jsonl is not None else []))


class AsyncWriter:
  """One background thread writing for a whole group: `sinks` are the
  writers (Columns, RunWriter, AcrossSeeds) flushed and closed with it.

  The first error stops the writing (what is queued after it is dropped: the
  disk that refused one row refuses the next) and is raised on the training
  thread by the next submit, flush or close; no call waits on a thread that
  has stopped."""

  POLL_S = 1.0  # how often a waiting flush checks that the thread still runs
  DRAIN_S = 5.0  # how long an abort after a fault elsewhere lets the queue drain

  def __init__(self, sinks: list):
    self.sinks = sinks
    self.q: queue.Queue = queue.Queue()
    self.error: BaseException | None = None
    self.thread = threading.Thread(target=self._loop, daemon=True, name='tinyjax-writer')
    self.thread.start()

  def _loop(self):
    while True:
      item = self.q.get()
      try:
        if item is None:
          return
        if self.error is not None:  # stopped: drop the work, wake the waiters
          pass
        elif isinstance(item, threading.Event):
          self.flush_sinks()
        else:
          fn, args = item
          fn(*args)
      except BaseException as e:  # surfaced on the training thread
        self.error = e
      finally:
        if isinstance(item, threading.Event):
          item.set()
        self.q.task_done()

  def flush_sinks(self):
    """On the writer thread: everything written so far on disk."""
    for w in self.sinks:
      w.flush()

  def submit(self, fn, *args):
    self._raise()
    self.q.put((fn, args))

  def flush(self):
    done = threading.Event()
    self.q.put(done)
    while not done.wait(self.POLL_S):
      if not self.thread.is_alive():
        raise RuntimeError('the writer thread stopped')
    self._raise()

  def close(self):
    self.flush()
    self.q.put(None)
    self.thread.join()
    for w in self.sinks:
      w.close()
    self._raise()

  def abort(self, drain: bool = False):
    """After a failure anywhere: stops the thread (dropping what is queued,
    unless `drain` and the thread has not failed itself: then it does that
    first, for at most DRAIN_S) and closes the files, ignoring their errors
    (the first one is the news); nothing is left to fail again at interpreter
    exit."""
    if drain and self.error is None:
      self.q.put(None)  # behind the work queued
      self.thread.join(timeout=self.DRAIN_S)
    if self.error is None:
      self.error = RuntimeError('aborted')  # the thread drops the rest
    self.q.put(None)
    self.thread.join(timeout=10 * self.POLL_S)
    for w in self.sinks:
      try:
        w.close()
      except Exception:  # noqa: BLE001 (a full disk fails the last flush too)
        pass

  def _raise(self):
    if self.error is not None:
      raise self.error
