"""Shared by the command-line entry points: a person's mistake is one line."""

import os
import sys

from absl import flags


def fail(msg: str, status: int = 2, tail: str = ''):
  """One line on stderr (msg cut to 400 characters, then `tail` whole), exit."""
  print(f'tinyjax: error: {msg[:400]}{tail}', file=sys.stderr)
  exit_now_if_distributed(status)
  sys.exit(status)


def exit_now_if_distributed(status: int, print_traceback: bool = False):
  """In a job of many processes, a process that fails exits at once: jax's
  exit handler would wait at a shutdown barrier for the others, which wait
  for it at theirs. Without it the coordination service sees the process
  gone (heartbeat timeout) and fails the others' next barrier."""
  dist = sys.modules.get('jax._src.distributed')
  if dist is not None and getattr(dist.global_state, 'client', None) is not None:
    if print_traceback:
      import traceback
      traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def parse_flags(argv):
  """absl flag parsing, with a mistake reported as one line and exit status 2."""
  fl = flags.FLAGS
  try:
    rest = fl(argv)
    if len(rest) > 1:
      fail(f'unexpected arguments: {" ".join(rest[1:])} (every option is a --flag; see --help)')
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


def define_sampling_flags(temperature: float, top_k: int, max_new_tokens, seed_help: str):
  """--temperature, --top_k, --top_p, --max_new_tokens, --seed (generate, chat)."""
  flags.DEFINE_float('temperature', temperature, '0 = greedy; else sample at this temperature.')
  flags.DEFINE_integer('top_k', top_k, 'Sample among the k most likely tokens (0 = all).')
  flags.DEFINE_float('top_p', 1.0, 'Sample within the top-p probability mass (1 = all).')
  flags.DEFINE_integer('max_new_tokens', max_new_tokens,
                       'Generation cap' + ('' if max_new_tokens else
                                           ' (default: the config\'s eval.max_new_tokens)') + '.')
  flags.DEFINE_integer('seed', 0, seed_help)


def sampling_settings(fl):
  """The sampler.Settings of the sampling flags; ConfigError naming a bad one."""
  from tinyjax import sampler
  from tinyjax.tasks import ConfigError
  for name, ok, allowed in (('temperature', fl.temperature >= 0, '>= 0 (0 = greedy)'),
                            ('top_k', fl.top_k >= 0, '>= 0 (0 = all)'),
                            ('top_p', 0 < fl.top_p <= 1, 'in (0, 1]'),
                            ('max_new_tokens', fl.max_new_tokens is None or fl.max_new_tokens >= 1,
                             '>= 1')):
    if not ok:
      raise ConfigError(f'--{name}: {fl[name].value} is not allowed; use {allowed}')
  return sampler.Settings(fl.temperature, fl.top_k, fl.top_p)


def define_cpu_devices_flag():
  flags.DEFINE_integer(
      'cpu_devices', 0,
      'JAX CPU devices to split the runs axis over when training on the CPU: 0 = '
      'one per core this process may use. XLA:CPU runs a tiny model\'s ops on about '
      'one core, so a sweep split over the cores runs faster. Ignored when XLA_FLAGS '
      'sets --xla_force_host_platform_device_count; no effect on a GPU or TPU.',
      lower_bound=0)


def set_cpu_devices(n: int):
  """Before JAX starts its backends: n CPU devices (0 = one per usable core)."""
  if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
    return
  import jax
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  jax.config.update('jax_num_cpu_devices', n or cores or 1)


def define_distributed_flags():
  flags.DEFINE_string('coordinator_address', None,
                      'Many processes (jax.distributed): HOST:PORT of process 0, reachable '
                      'by every process. With --num_processes and --process_id.')
  flags.DEFINE_integer('num_processes', None, 'Many processes: how many in the job.')
  flags.DEFINE_integer('process_id', None, 'Many processes: this one\'s index, 0..N-1.')
  flags.DEFINE_bool('distributed', False,
                    'Many processes, read from the cluster\'s environment where JAX '
                    'detects it (SLURM, a TPU slice, Open MPI, Kubernetes): '
                    'jax.distributed.initialize() without arguments.')


def initialize_distributed(fl):
  """jax.distributed.initialize per the flags (nothing without them)."""
  from tinyjax import distributed
  distributed.initialize(fl.coordinator_address, fl.num_processes, fl.process_id,
                         auto=fl.distributed)
