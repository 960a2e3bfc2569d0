"""Injects faults into tinyjax.run's main, many times in one process.

  python tests/fault_harness.py WORKROOT [tinyjax.run flags...]

Wraps each injection point (a file write on the writer thread, in an event
file, in orbax's checkpoint thread, a checkpoint save, the summary, the
device fetch) to count its calls; one uninterrupted run counts them; then for
each point and a first / middle / last call of it, a run whose call fails
(OSError, or XLA's RESOURCE_EXHAUSTED for the device). Prints one JSON line
per run: exit status, stderr, seconds from the fault to main's return, the
threads left running, the checkpoint steps on disk. tests/test_faults.py runs
it under a timeout: a fault that leaves the process waiting fails there.
"""

import contextlib
import errno
import io
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from orbax.checkpoint._src.path import async_path  # noqa: E402
import tensorboardX.record_writer  # noqa: E402

from tinyjax import distributed  # noqa: E402
from tinyjax import run  # noqa: E402
from tinyjax import train  # noqa: E402
from tinyjax import writer  # noqa: E402


def oom():
  return jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to '
                                    'allocate 1048576 bytes.')


# name: (owner, attribute, the error it raises, where it runs)
POINTS = {
    'columns': (writer.Columns, 'write', lambda: OSError(errno.ENOSPC, 'full', 'x.npz')),
    'jsonl': (writer.RunWriter, 'write', lambda: OSError(errno.EACCES, 'denied', 'm.jsonl')),
    'events': (tensorboardX.record_writer.RecordWriter, 'write',
               lambda: OSError(errno.ENOSPC, 'full', 'events')),
    'orbax_thread': (async_path, 'write_text', lambda: OSError(errno.EROFS, 'ro', 'commit')),
    'orbax_save': (ocp.CheckpointManager, 'save', lambda: OSError(errno.ENOSPC, 'full', 'ckpt')),
    'summary': (train, 'write_summary', lambda: OSError(errno.ENOSPC, 'full', 'summary.json')),
    'device': (distributed, 'local', oom),
}


class Injector:
  """Counts calls of every point; the `at`-th call of `point` raises."""

  def __init__(self):
    self.lock = threading.Lock()
    self.calls = dict.fromkeys(POINTS, 0)
    self.point, self.at, self.fired = None, 0, None
    for name, (owner, attr, make) in POINTS.items():
      setattr(owner, attr, self._wrap(name, getattr(owner, attr), make))

  def _wrap(self, name, real, make):
    def wrapper(*args, **kwargs):
      with self.lock:
        self.calls[name] += 1
        hit = name == self.point and self.calls[name] == self.at
        if hit:
          self.fired = time.time()
      if hit:
        raise make()
      return real(*args, **kwargs)
    if isinstance(real, (staticmethod, classmethod)):
      return real
    return wrapper

  def arm(self, point=None, at=0):
    self.calls = dict.fromkeys(POINTS, 0)
    self.point, self.at, self.fired = point, at, None


def main_once(workdir):
  """tinyjax.run's main as the command line runs it: (status, stdout, stderr)."""
  run.FLAGS.workdir = workdir
  sys.argv = ['tinyjax/run.py', *FLAG_ARGS, '--workdir', workdir]  # as the command line
  out, err = io.StringIO(), io.StringIO()
  status = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      run.main([])
    except SystemExit as e:
      status = e.code
  return status, out.getvalue(), err.getvalue()


def ckpt_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


FLAG_ARGS = []


def main():
  root, flags = sys.argv[1], sys.argv[2:]
  FLAG_ARGS[:] = flags
  run.FLAGS(['tinyjax.run', *flags, '--workdir', root])
  inj = Injector()
  status, _, err = main_once(os.path.join(root, 'count'))
  assert status == 0, err
  totals = dict(inj.calls)
  print(json.dumps({'totals': totals}), flush=True)
  for point, total in totals.items():
    for at in sorted({1, (total + 1) // 2, total}):
      w = os.path.join(root, f'{point}-{at}')
      inj.arm(point, at)
      t0 = time.time()
      status, _, err = main_once(w)
      done = time.time()

      def left_running():
        return [t.name for t in threading.enumerate()
                if t is not threading.main_thread() and (not t.daemon or 'tinyjax' in t.name)]
      # A library thread may take a moment to end after the run has returned
      # (orbax's asyncio loop): waiting for it is not hanging; 5 s is.
      while left_running() and time.time() < done + 5:
        time.sleep(0.05)
      left = left_running()
      print(json.dumps({'point': point, 'at': at, 'total': total, 'status': status,
                        'stderr': err, 'fired': inj.fired is not None,
                        'seconds_after_fault': done - (inj.fired or t0),
                        'threads_left': left, 'checkpoints': ckpt_steps(w)}), flush=True)
  print(json.dumps({'done': True}), flush=True)


if __name__ == '__main__':
  main()
