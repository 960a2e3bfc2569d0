"""A trained workdir's runs and checkpoints: what generate, peek and chat read.

Everything is rebuilt from the workdir's config.json (and tokenizer.json for a
text task); nothing here trains.
"""

from __future__ import annotations

import jax

from tinyjax import checkpoint as ckpt_lib
from tinyjax import program as program_lib
from tinyjax import sweep as sweep_lib
from tinyjax import train
from tinyjax.tasks import ConfigError


def open_run(workdir: str, run: str | None = None):
  """(program, group, index of the run in its group) of one run of a workdir
  (default: the first), with the tokenizer the workdir saved."""
  config = train.load_config(workdir)
  groups = sweep_lib.expand(config)
  names = [r['name'] for g in groups for r in g.runs]
  name = run or names[0]
  if name not in names:
    raise ConfigError(f'--run: {name!r} is not a run of {workdir}; runs: {names[:8]}'
                      + (' ...' if len(names) > 8 else ''))
  group = next(g for g in groups if any(r['name'] == name for r in g.runs))
  index = [r['name'] for r in group.runs].index(name)
  # program_for: one Program (and its compiled functions) per distinct config
  # in a process, so repeated calls (notebooks, tests) compile once.
  prog = train.program_for(group.config, train.build_task(group.config, workdir, group.name))
  return prog, group, index


def checkpoint_steps(workdir: str, group) -> list[int]:
  return sorted(ckpt_lib.manager(workdir, group.name, read_only=True).all_steps())


def load_params(workdir: str, prog, group, index: int, step: int | None = None):
  """(step, params of the run with a leading runs axis of 1) from the newest
  readable checkpoint, or the one at `step`; ConfigError if there is none."""
  found, params = load_group_params(workdir, prog, group, step)
  return found, jax.tree.map(lambda x: x[index:index + 1], params)


def run_model(prog, params, i: int = 0):
  """Run i's NNX model from params with a leading runs axis (load_params gives
  one run at index 0; load_group_params every run of the group)."""
  from flax import nnx
  return nnx.merge(prog.graphdef, jax.tree.map(lambda x: jax.numpy.asarray(x[i]), params))


def load_group_params(workdir: str, prog, group, step: int | None = None):
  """(step, params of every run of the group, leading runs axis) from one
  restore: exporting many runs of a step reads the checkpoint once."""
  hp_np = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  mgr = ckpt_lib.manager(workdir, group.name, read_only=True)
  found, state = ckpt_lib.restore_latest(mgr, ckpt_lib.numpy_target(prog.init, hp_np), step,
                                        move_unreadable=False)
  if state is None:
    raise ConfigError(f'--workdir {workdir}: no readable checkpoint'
                      + (f' at step {step}' if step is not None else ''))
  return found, state['params']
