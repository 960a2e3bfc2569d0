"""python -m tinyjax.run --config configs/timmy.py[:variant] --workdir DIR

Parses flags and calls train.train_and_evaluate; nothing else lives here.
Override any config field on the command line, e.g. --config.train.steps=500.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file[:variant].',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Output directory (resumed if it exists).')
flags.DEFINE_bool('overwrite', False, 'Delete --workdir first instead of resuming.')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  from tinyjax import train  # after flag parsing: a bad flag fails fast
  from tinyjax.tasks import ConfigError
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                       overwrite=FLAGS.overwrite, progress=FLAGS.progress)
  except ConfigError as e:
    print(f'tinyjax: error: {e}', file=sys.stderr)
    sys.exit(2)
  except train.WriteError as e:
    print(f'tinyjax: error: {e}', file=sys.stderr)
    sys.exit(1)
  except train.Interrupted:
    print(f'tinyjax: stopped; resume with the same command (--workdir {FLAGS.workdir})',
          file=sys.stderr)
    sys.exit(130)
  from tinyjax import report
  print(report.brief(summary))
  print(f'outputs in {FLAGS.workdir}: summary.json, config.json, checkpoints/, and per run '
        f'metrics.jsonl + TensorBoard events (tensorboard --logdir {FLAGS.workdir})')


def parse_flags(argv):
  """absl flag parsing, with a mistake reported as one line and exit status 2."""
  try:
    rest = FLAGS(argv)
    _ = list(FLAGS.config.keys())  # loaded lazily; fail here, not later
    return rest
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    bad = [a for a in argv[1:] if a.startswith('--config.')]
    if isinstance(e, (AttributeError, KeyError)) and bad:  # unknown config field
      hint = ' '.join(str(e).replace('\\n', ' ').strip('\'"').split()).replace("\\'", '')
      msg = f'no such config field in {" ".join(bad)} ({hint})'
    elif 'earlier failure to load' in str(e):
      path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
      if path is None and '--config' in argv[:-1]:
        path = argv[argv.index('--config') + 1]
      msg = f'--config: {path!r} could not be loaded (no such file, or it fails on import)'
    else:
      lines = [l for l in str(e).splitlines() if l.strip()]
      cause = lines[-1].strip() if 'Traceback' in str(e) else ''
      msg = ' '.join(lines[0].split()) + (f' {cause}' if cause else '')
    print(f'tinyjax: error: {msg[:400]}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
