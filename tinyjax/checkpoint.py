"""Orbax checkpoints of a group's stacked training state (leading `runs` axis).

Layout: WORKDIR/[GROUP/]checkpoints/STEP/ ; the state is saved without the
padding runs, so a checkpoint restores on any number of devices.

Saves are asynchronous: orbax writes on its own threads, which keep an error
until someone waits. `raise_if_failed` (each chunk) brings a failed save's
error to the training loop within a chunk; `stop` ends the threads after any
fault without a second error. Orbax also logs such an error with its traceback;
the run reports it as one line (tinyjax.faults), so those log records are
dropped (`_QuietFaults`). A save cut short (STEP.orbax-checkpoint-tmp*) is
never read, and is deleted when the next run opens the directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger('tinyjax')


class _QuietFaults(logging.Filter):
  """Drops orbax's log records of a write that failed for a reason the run
  reports itself (a full disk, a read-only workdir: tinyjax.faults)."""

  def filter(self, record):
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None or 'orbax' not in record.pathname:
      return True
    from tinyjax import faults
    return faults.os_error(exc) is None


def _quiet_orbax_faults():
  absl_logger = logging.getLogger('absl')  # orbax logs through absl.logging
  if not any(isinstance(f, _QuietFaults) for f in absl_logger.filters):
    absl_logger.addFilter(_QuietFaults())
  if not getattr(sys.unraisablehook, 'tinyjax', False):
    sys.unraisablehook = _drop_closed_loop_callbacks(sys.unraisablehook)


def _drop_closed_loop_callbacks(hook):
  """A write that fails while others are in flight ends orbax's event loop;
  tensorstore then completes the others into the closed loop, each printing
  'RuntimeError: Event loop is closed' (as unraisable): noise after the fault."""
  def quiet(u):
    if not (isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == 'Event loop is closed'):
      hook(u)
  quiet.tinyjax = True
  return quiet


def raise_if_failed(mgr):
  """Raises the error of an asynchronous save that has failed; returns at once
  while one is still being written."""
  if not mgr.is_saving_in_progress():
    mgr.wait_until_finished()


def stop(mgr):
  """After a fault: waits for orbax's threads to end and closes the manager;
  their errors (the same fault, or its consequence) are not raised again."""
  for call in (mgr.wait_until_finished, mgr.close):
    try:
      call()
    except Exception:  # noqa: BLE001
      pass


def manager(workdir: str, group_name: str, keep: int = 0, read_only: bool = False):
  _quiet_orbax_faults()
  directory = os.path.abspath(os.path.join(workdir, group_name, 'checkpoints'))
  return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      max_to_keep=keep or None, enable_async_checkpointing=not read_only,
      create=not read_only, read_only=read_only,
      cleanup_tmp_directories=not read_only),  # a save cut short by a crash
      # One unnamed item, fixed here: else orbax infers it from the first step
      # it reads, and an empty STEP/ would switch it to many named items, after
      # which no checkpoint restores and no save is accepted.
      item_handlers=ocp.StandardCheckpointHandler())


def restore_latest(mgr, target, at_step: int | None = None, move_unreadable: bool = True):
  """The newest checkpoint (or `at_step`) that reads back; older ones if damaged.

  A damaged one is moved to checkpoints.unreadable/STEP (kept for a post-mortem,
  out of the way of the save that will redo that step).
  """
  steps = sorted(mgr.all_steps(), reverse=True)
  if at_step is not None:
    steps = [s for s in steps if s == at_step]
  moved = False
  try:
    for step in steps:
      try:
        return step, mgr.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # truncated or corrupt files
        log.info('checkpoint at step %d is unreadable (%s)', step,  # the details
                 str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        dst = os.path.join(str(mgr.directory) + '.unreadable', str(step))
        print(f'tinyjax: warning: checkpoint at step {step} is unreadable'
              + (f' (moved to {dst})' if move_unreadable else '') + '; trying an older one',
              flush=True)
        if move_unreadable:
          src = os.path.join(str(mgr.directory), str(step))
          os.makedirs(os.path.dirname(dst), exist_ok=True)
          shutil.rmtree(dst, ignore_errors=True)
          os.replace(src, dst)
          moved = True
    return None, None
  finally:
    if moved:
      mgr.reload()


def latest_step(workdir: str, group_name: str = '') -> int | None:
  directory = os.path.join(workdir, group_name, 'checkpoints')
  steps = [int(d) for d in os.listdir(directory) if d.isdigit()] if os.path.isdir(directory) else []
  return max(steps) if steps else None


def numpy_target(init_fn, hp_np):
  """Host zeros shaped like the state init_fn(hp) returns (restore target)."""
  return zeros(jax.eval_shape(init_fn, hp_np))


def zeros(abstract):
  """Host zeros shaped like a tree of shapes (jax.eval_shape's)."""
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
