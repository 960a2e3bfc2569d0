"""Many processes, one sweep: jax.distributed and what each process owns.

A job of N processes (one per host, or per GPU) runs the same command. After
`initialize`, jax.devices() lists every process's devices; tinyjax.loop puts
the `runs` axis of a group on one global mesh over all of them, so each
process computes the runs on its own devices and nothing crosses processes
while training (runs are independent). Each process fetches and writes only
the runs it owns (`local`); process 0 writes the summary and report once all
have finished (`barrier`). The workdir must be one shared filesystem.

A single process is the same code: it owns every run, barriers return at once.
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np

from tinyjax.tasks import ConfigError


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, auto: bool = False) -> None:
  """jax.distributed.initialize from flags, or (auto) from the cluster's
  environment where JAX detects one (SLURM, a TPU slice, Open MPI, Kubernetes).
  Nothing when neither is asked for. ConfigError names a bad flag."""
  explicit = [coordinator_address, num_processes, process_id]
  if not auto and all(v is None for v in explicit):
    return
  if auto and any(v is not None for v in explicit):
    raise ConfigError('--distributed reads the cluster\'s environment; leave out '
                      '--coordinator_address, --num_processes and --process_id with it')
  if not auto:
    if any(v is None for v in explicit):
      raise ConfigError('--coordinator_address, --num_processes and --process_id go together; '
                        'give all three (or --distributed to let JAX read the cluster)')
    if not re.fullmatch(r'\[?[\w.:-]+\]?:\d+', coordinator_address):
      raise ConfigError(f'--coordinator_address: {coordinator_address!r} is not HOST:PORT')
    if num_processes < 1:
      raise ConfigError(f'--num_processes: {num_processes} is not allowed; use >= 1')
    if not 0 <= process_id < num_processes:
      raise ConfigError(f'--process_id: {process_id} is not allowed; use 0..{num_processes - 1}')
  # CPU processes talk through gloo (XLA's default CPU collectives stay in one
  # process); harmless on GPU and TPU, whose collectives are their own.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {} if auto else dict(coordinator_address=coordinator_address,
                                num_processes=num_processes, process_id=process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ConfigError(f'jax.distributed.initialize failed: {first[:300]}') from None
  # orbax's default barrier is an XLA all-reduce (sync_global_devices), run
  # from its checkpointing threads: beside the main thread's own collectives
  # (the sampler's exit test) the processes can enter them in different orders
  # and deadlock (seen in CI). Its coordination-service barrier has no XLA in it.
  import orbax.checkpoint  # noqa: F401  (defines the flag)
  from absl import flags
  flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def is_main() -> bool:
  return jax.process_index() == 0


BARRIER_TIMEOUT_S = 24 * 3600  # the last process may still be training
_barriers = [0]


def barrier(name: str) -> None:
  """Every process waits here until all arrive (a no-op in one process).
  A coordination-service barrier, not an XLA collective (see initialize)."""
  if jax.process_count() > 1:
    from jax._src import distributed as jax_distributed
    _barriers[0] += 1  # every process passes the same barriers in the same order
    jax_distributed.global_state.client.wait_at_barrier(
        f'tinyjax/{_barriers[0]}/{name}', BARRIER_TIMEOUT_S * 1000)


def owned(x, axis: int = 0) -> np.ndarray:
  """Indices along `axis` of the global array x held by this process's devices."""
  if isinstance(x, np.ndarray) or x.is_fully_addressable:
    return np.arange(x.shape[axis])
  idx = set()
  for s in x.addressable_shards:
    idx.update(range(*s.index[axis].indices(x.shape[axis])))
  return np.asarray(sorted(idx))


def local(x, axis: int = 0) -> np.ndarray:
  """This process's part of x along `axis`, in the order of `owned(x, axis)`
  (all of x in one process). Waits for the device."""
  if isinstance(x, np.ndarray) or x.is_fully_addressable:
    return np.asarray(x)
  parts = {}
  for s in x.addressable_shards:
    start = s.index[axis].indices(x.shape[axis])[0]
    parts.setdefault(start, s.data)
  return np.concatenate([np.asarray(parts[k]) for k in sorted(parts)], axis=axis)


def part_path(workdir: str, name: str) -> str:
  """WORKDIR/parts/NAME.pK.json: a process's share of a file process 0 merges."""
  return os.path.join(workdir, 'parts', f'{name}.p{jax.process_index()}.json')
