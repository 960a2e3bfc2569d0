"""python -m tinyjax.lens --workdir W [--out DIR] [--steps 0,250] --config.lenses.FIELD=VALUE ...

The checkpoint lenses on a finished (or stopped) run's saved checkpoints, no
retraining: e.g. the restricted LLC per module of a run trained without it,

  python -m tinyjax.lens --workdir runs/grok --config.lenses.llc_parts="('modules',)"

Every group's checkpoints are restored (tinyjax.checkpoint) and measured by the
same compiled program the training loop runs at a checkpoint (the Program's
`checkpoint_lenses`, vmapped over the group's runs), with the same key per
(seed, step): a lens measured here equals the one training would have
written with the same settings. The rows go where training writes its lens
rows, under --out instead of the workdir (default W/lenses_after):
OUT/[GROUP/]lenses/STEP.p0.npz and OUT/RUN/lenses.jsonl + TensorBoard
scalars for the runs that have per-run files. OUT/config.json is the config
the lenses ran with, OUT/summary.json the workdir's (a copy): so
tinyjax.results.load(OUT, 'lenses') and results.run_rows(OUT, 'lenses') read
the rows as they read a workdir's.

Only lenses.* fields may be overridden: the rest of the config is the one the
workdir trained with (config.json). Writes nothing in the workdir itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from tinyjax import cli

FLAGS = flags.FLAGS


def _lens_defaults() -> ml_collections.ConfigDict:
  from tinyjax import lenses as lenses_lib
  return ml_collections.ConfigDict({'lenses': dict(lenses_lib.DEFAULTS)})


def refuse_non_lens(argv):
  """Any --config that is not a lens field: one line, exit 2 (before
  config_flags reads the overrides, which it does when the flag is defined)."""
  from tinyjax import lenses as lenses_lib
  for a in argv[1:]:
    if a.startswith('--config') and not a.startswith('--config.lenses.'):
      cli.fail(f'{a.split("=")[0]}: only lens settings (--config.lenses.FIELD=VALUE) may be '
               'overridden; the rest is the workdir\'s config.json')
    field = a[len('--config.lenses.'):].split('=')[0]
    if a.startswith('--config.lenses.') and field not in lenses_lib.DEFAULTS:
      cli.fail(f'--config.lenses.{field}: no such lens field; the fields: '
               f'{", ".join(sorted(lenses_lib.DEFAULTS))}')


def define_flags():
  """The command's flags, defined only when it runs as the command: importing
  tinyjax.lens beside another entry point (tinyjax.generate also defines
  --workdir) must not define a flag twice."""
  config_flags.DEFINE_config_dict(
      'config', _lens_defaults(),
      'Lens settings only: --config.lenses.FIELD=VALUE (any other field is the workdir\'s).',
      lock_config=True)
  flags.DEFINE_string('workdir', None, 'A trained tinyjax workdir (read only).')
  flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/lenses_after). Its lens files '
                      'are replaced.')
  flags.DEFINE_string('steps', '', 'Comma-separated checkpoint steps (default: every checkpoint).')
  cli.define_cpu_devices_flag()
  flags.mark_flags_as_required(['workdir'])


def overridden(argv) -> list[str]:
  """The lens fields named on the command line, in order."""
  names = [a[len('--config.lenses.'):].split('=')[0] for a in argv[1:]
           if a.startswith('--config.lenses.')]
  return list(dict.fromkeys(names))


def lens_config(workdir: str, overrides: dict):
  """The workdir's config with `overrides` {lens field: value} applied."""
  from tinyjax import train
  config = train.load_config(workdir)
  if 'lenses' not in config:
    config.lenses = ml_collections.ConfigDict()
  for k, v in overrides.items():
    if k in config.lenses:
      config.lenses[k] = None  # a type change (a list read from JSON -> a tuple) is allowed
    config.lenses[k] = v
  return config


def run(workdir: str, overrides: dict, out: str | None = None,
        steps: list[int] | None = None) -> str:
  """The checkpoint lenses of every group of `workdir` at `steps` (default:
  every checkpoint), with `overrides` of config.lenses; returns the output
  folder. ConfigError for a mistake (no checkpoint lens on, a missing step)."""
  import jax
  import numpy as np
  from tinyjax import checkpoint as ckpt_lib
  from tinyjax import loop
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  from tinyjax import validate
  from tinyjax.tasks import ConfigError

  out = out or os.path.join(workdir, 'lenses_after')
  if os.path.realpath(out) == os.path.realpath(workdir):
    raise ConfigError(f'--out {out}: is the workdir; its own lens rows and metrics would be '
                      'replaced (use another folder)')
  config = lens_config(workdir, overrides)
  validate.check(config)
  groups = sweep_lib.expand(config)
  plan = []
  for group in groups:  # every mistake before any work
    task = train.build_task(group.config, workdir, group.name)
    prog = train.program_for(group.config, task)
    if not prog.has_checkpoint_lenses:
      raise ConfigError('no checkpoint lens is on (e.g. --config.lenses.llc_parts="(\'modules\',)",'
                        ' llc=True, sharpness_iters, hessian_lanczos, sharpness_precond)')
    mgr = ckpt_lib.manager(workdir, group.name, read_only=True)
    have = sorted(mgr.all_steps())
    missing = [s for s in steps or [] if s not in have]
    if missing or not have:
      raise ConfigError(f'--steps: no checkpoint at {missing or "any step"} in '
                        f'{os.path.join(workdir, group.name)}; checkpoints: {have[:12]}'
                        + (' ...' if len(have) > 12 else ''))
    plan.append((group, task, prog, mgr, [s for s in have if steps is None or s in steps]))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  if os.path.exists(os.path.join(workdir, 'summary.json')):  # results.load(out, 'lenses') reads it
    shutil.copyfile(os.path.join(workdir, 'summary.json'), os.path.join(out, 'summary.json'))
  for group, task, prog, mgr, todo in plan:
    # Placed as loop.place_group places a group (mesh, padding, sharding),
    # reading each checkpoint in turn: the lens program sees what training's did.
    hp_np, mesh, n_pad, shard, hp, data = loop.place_inputs(group, prog)
    hp = prog.with_init(hp)
    target = ckpt_lib.numpy_target(prog.init, hp_np)
    n_runs = len(group.runs)
    g = loop.Placed(group, prog, mesh, n_runs, n_pad, hp, data, None, 0, None, None,
                    np.arange(n_runs), {i: i for i in range(n_runs)})
    writers = loop.Writers(group, task, out, g)
    try:
      for step in todo:
        _, state = ckpt_lib.restore_latest(mgr, target, step, move_unreadable=False)
        state = jax.device_put(loop._pad(state, n_pad), shard)
        rows = prog.checkpoint_lenses(state, hp, data, step)
        writers.out.submit(writers.write_lenses, step, rows)
        writers.out.flush()  # one checkpoint's state on the device at a time
        print(f'tinyjax: lenses of {group.name or "runs"} at step {step} in '
              f'{os.path.join(out, group.name)}', flush=True)
    except BaseException:
      writers.out.abort()
      raise
    writers.out.close()
  return out


def main(argv):
  logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
  cli.set_cpu_devices(FLAGS.cpu_devices)
  from tinyjax.tasks import ConfigError
  overrides = {k: FLAGS.config.lenses[k] for k in overridden(sys.argv)}
  try:
    steps = [int(s) for s in FLAGS.steps.split(',') if s.strip()] or None
  except ValueError:
    cli.fail(f'--steps: {FLAGS.steps!r} is not a comma-separated list of steps')
  try:
    out = run(FLAGS.workdir, overrides, FLAGS.out, steps)
  except ConfigError as e:
    cli.fail(str(e))
  print(f'tinyjax: lens rows in {out}: lenses/*.npz per group, RUN/lenses.jsonl; '
        f'overridden: {json.dumps({k: str(v) for k, v in overrides.items()})}')


if __name__ == '__main__':
  refuse_non_lens(sys.argv)
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
