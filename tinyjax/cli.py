"""Shared by the command-line entry points: a person's mistake is one line."""

import sys

from absl import flags


def fail(msg: str, status: int = 2):
  print(f'tinyjax: error: {msg[:400]}', file=sys.stderr)
  sys.exit(status)


def parse_flags(argv):
  """absl flag parsing, with a mistake reported as one line and exit status 2."""
  fl = flags.FLAGS
  try:
    rest = fl(argv)
    if 'config' in fl:
      _ = list(fl.config.keys())  # config files load lazily; fail here, not later
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
    fail(msg)
