"""Writes metric rows off the training thread: metrics.jsonl + TensorBoard
(and the checkpoint lenses' rows: lenses.jsonl).

The host loop hands over whole chunks of rows (numpy, already on the host) and
goes back to the device at once; a background thread formats and writes them.
`flush()` blocks until everything handed over is on disk, which the loop calls
before a checkpoint so that a checkpoint never runs ahead of its metrics.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading

import tensorboardX
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import hparams as tb_hparams


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
    self.tb = tensorboardX.SummaryWriter(run_dir, purge_step=start_step or None,
                                         flush_secs=30)
    if start_step == 0 and hparams:
      for summary in tb_hparams(hparams, {m: 0.0 for m in metric_names}):
        self.tb._get_file_writer().add_summary(summary)

  def write(self, step: int, metrics: dict[str, float]):
    self._row(self.jsonl, step, metrics)

  def _row(self, jsonl, step: int, metrics: dict[str, float]):
    jsonl.write(json.dumps({'step': step, **{k: _clean(v) for k, v in metrics.items()}}) + '\n')
    # One event per row with every scalar in it: add_scalar per value costs
    # ~16x more host time, which adds up over hundreds of runs.
    values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()
              if math.isfinite(v)]
    self.tb._get_file_writer().add_summary(Summary(value=values), step)

  def write_lenses(self, step: int, metrics: dict[str, float], images=None):
    """A checkpoint's lens row (lenses.jsonl, TensorBoard scalars) and
    attention maps {tag: 2-D array in [0, 1]} as TensorBoard images."""
    if self.lens_jsonl is None:
      self.lens_jsonl = open(self.lens_path, 'a')
    self._row(self.lens_jsonl, step, metrics)
    for tag, img in (images or {}).items():
      self.tb.add_image(tag, img, step, dataformats='HW')

  def flush(self):
    for f in (self.jsonl, self.lens_jsonl):
      if f is not None:
        f.flush()
        os.fsync(f.fileno())
    self.tb.flush()

  def close(self):
    self.flush()
    self.jsonl.close()
    if self.lens_jsonl is not None:
      self.lens_jsonl.close()
    self.tb.close()


class AsyncWriter:
  """One background thread writing for every run of a group."""

  def __init__(self, writers: list[RunWriter]):
    self.writers = writers
    self.q: queue.Queue = queue.Queue()
    self.error: BaseException | None = None
    self.thread = threading.Thread(target=self._loop, daemon=True)
    self.thread.start()

  def _loop(self):
    while True:
      item = self.q.get()
      try:
        if item is None:
          return
        if isinstance(item, threading.Event):
          for w in self.writers:
            w.flush()
          item.set()
          continue
        fn, args = item
        fn(*args)
      except BaseException as e:  # surfaced on the training thread
        self.error = e
        if isinstance(item, threading.Event):
          item.set()
      finally:
        self.q.task_done()

  def submit(self, fn, *args):
    self._raise()
    self.q.put((fn, args))

  def flush(self):
    done = threading.Event()
    self.q.put(done)
    done.wait()
    self._raise()

  def close(self):
    self.flush()
    self.q.put(None)
    self.thread.join()
    for w in self.writers:
      w.close()
    self._raise()

  def _raise(self):
    if self.error is not None:
      raise self.error
