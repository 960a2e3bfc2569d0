"""Faults the host cannot fix, as one line each: what happened, the last
intact checkpoint, and how to go on (docs/faults.md lists them).

A fault can start on any thread: the training loop, the metrics writer
(tinyjax.writer), orbax's checkpoint threads (tinyjax.checkpoint). Each of
those hands its error to the training loop, which stops the others and calls
`from_exception`; tinyjax.run prints the message and exits with `status`.
"""

from __future__ import annotations

import errno
import os
import re

# errno -> (what the user reads, what to do). These are the user's to fix
# (exit status 2); any other OSError is reported the same way with status 1.
FIXABLE = {
    errno.ENOSPC: ('no space left on device', 'free some space'),
    errno.EDQUOT: ('disk quota exceeded', 'free some space'),
    errno.EACCES: ('permission denied', 'make the workdir writable again'),
    errno.EPERM: ('operation not permitted', 'make the workdir writable again'),
    errno.EROFS: ('read-only file system', 'make the workdir writable again'),
}


class Fault(Exception):
  """A run ended by its environment; str() is the message (one line)."""
  status = 1


class WriteError(Fault):
  """The workdir could not be written (full disk, permissions, ...)."""

  def __init__(self, msg: str, fixable: bool):
    super().__init__(msg)
    self.status = 2 if fixable else 1


class DeviceMemoryError(Fault):
  """The device ran out of memory (XLA's RESOURCE_EXHAUSTED)."""
  status = 2


def _chain(exc):
  """exc, then its causes and contexts (depth first, each once; not a context
  that `raise ... from None` hid)."""
  seen, stack = set(), [exc]
  while stack:
    e = stack.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    yield e
    stack += [None if e.__suppress_context__ else e.__context__, e.__cause__]


# tensorstore (orbax's storage) reports a failed write as ValueError text:
# '... Failed writing: "PATH": ... No space left on device [os_error_code='28']'
_TS_ERRNO = re.compile(r"os_error_code='?(\d+)")
_TS_PATH = re.compile(r'(?:Failed writing|local file|Error writing[^"]*at local file):? "([^"]+)"')


def os_error(exc) -> OSError | None:
  """The OSError behind exc (itself, a cause, or tensorstore's text), if any."""
  for e in _chain(exc):
    if isinstance(e, OSError):
      return e
    m = _TS_ERRNO.search(str(e))
    if m:
      n = int(m.group(1))
      path = _TS_PATH.search(str(e))
      return OSError(n, os.strerror(n), path.group(1) if path else None)
  return None


def is_device_oom(exc) -> bool:
  """XLA's out-of-memory error (a JaxRuntimeError saying RESOURCE_EXHAUSTED)."""
  import jax
  return any(isinstance(e, jax.errors.JaxRuntimeError) and 'RESOURCE_EXHAUSTED' in str(e)
             for e in _chain(exc)) and os_error(exc) is None


def kept_checkpoints(steps: dict[str, int | None]) -> str:
  """'last intact checkpoint: step 100' (per group when there are several)."""
  if len(steps) == 1:
    (step,) = steps.values()
    return ('no checkpoint yet, a rerun starts over' if step is None
            else f'last intact checkpoint: step {step}')
  return 'last intact checkpoints: ' + ', '.join(
      f'{name} {"none" if s is None else f"step {s}"}' for name, s in steps.items())


def from_exception(exc, kept: dict[str, int | None], runs_per_device: int | None = None
                   ) -> Fault | None:
  """The Fault that `exc` is (None: a bug, to be raised as it is).
  kept: {group: its last intact checkpoint step}."""
  resume = 'then rerun the same command to resume'
  if is_device_oom(exc):
    n = runs_per_device
    return DeviceMemoryError(
        'the device ran out of memory' + (f' with {n} run{"s" if n > 1 else ""} per device'
                                          if n else '')
        + f' (RESOURCE_EXHAUSTED); {kept_checkpoints(kept)}; train fewer runs per device '
        '(--config.sweep.seeds, --config.sweep.lrs) or a smaller model or train.batch_size '
        'in a new --workdir, or on more devices rerun the same command to resume')
  e = os_error(exc)
  if e is None:
    return None
  what, todo = FIXABLE.get(e.errno, (e.strerror or str(e) or type(e).__name__, 'fix the cause'))
  where = f' writing {str(e.filename)[-200:]}' if e.filename else ''
  return WriteError(f'{what}{where}; {kept_checkpoints(kept)}; {todo}, {resume}',
                    fixable=e.errno in FIXABLE)
