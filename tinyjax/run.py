"""python -m tinyjax.run --config configs/timmy.py[:variant] --workdir DIR

Parses flags and calls tinyjax.api.train (what a notebook calls); nothing
else lives here. Override any config field on the command line, e.g.
--config.train.steps=500.
"""

import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file[:variant].',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Output directory (resumed if it exists).')
flags.DEFINE_bool('overwrite', False, 'Delete --workdir first instead of resuming.')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
cli.define_cpu_devices_flag()
cli.define_distributed_flags()
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv  # cli.parse_flags refused any
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  cli.set_cpu_devices(FLAGS.cpu_devices)
  from tinyjax import api
  from tinyjax import faults
  from tinyjax import train  # after flag parsing: a bad flag fails fast
  from tinyjax.tasks import ConfigError
  try:
    cli.initialize_distributed(FLAGS)
    # 'file.py:attr' specs in the config are relative to the config file.
    config_dir = os.path.dirname(os.path.abspath(config_flags.get_config_filename(FLAGS['config'])))
    summary = api.train(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite,
                        progress=FLAGS.progress, config_dir=config_dir).summary
  except ConfigError as e:
    cli.fail(str(e))
  except faults.Fault as e:  # a full disk, the device out of memory, ...: docs/faults.md
    cli.fail(str(e), status=e.status, tail=f': {resume_command()}')
  except train.Interrupted:
    print(f'tinyjax: stopped; resume with the same command (--workdir {FLAGS.workdir})',
          file=sys.stderr)
    cli.exit_now_if_distributed(130)
    sys.exit(130)
  except Exception:  # a bug: its traceback (then, in a job of many processes, exit now)
    cli.exit_now_if_distributed(1, print_traceback=True)
    raise
  import jax
  if jax.process_index():  # process 0 speaks for the job
    return
  from tinyjax import report
  print(report.brief(summary))
  print(f'outputs in {FLAGS.workdir}: summary.json, config.json, checkpoints/, and per run '
        f'metrics.jsonl + TensorBoard events (tensorboard --logdir {FLAGS.workdir})')


def resume_command() -> str:
  """This command line without --overwrite (which would delete what is kept)."""
  args = [a for a in sys.argv[1:] if a.split('=')[0] not in ('--overwrite', '-overwrite')]
  return 'python -m tinyjax.run ' + shlex.join(args)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
