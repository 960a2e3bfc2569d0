"""Optimizers from `config.optimizer`, with sweepable hyperparameters traced.

`make(cfg, hp)` is called inside the traced per-run functions: `hp` holds the
run's hyperparameters as traced scalars (learning rate, weight decay, momentum,
...), so a whole grid compiles once. `optax.inject_hyperparams` keeps the
current values in the optimizer state, where the trainer reads `lr` to log it.

Grokfast-EMA (tinyjax.grokfast) is chained before everything else when the
config declares `optimizer.grokfast_lambda` (0 = the raw gradient, i.e. off);
configs without the field (e.g. Timmy) get exactly the optimizer they had.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tinyjax import grokfast
from tinyjax.tasks import ConfigError

NAMES = ('sgd', 'adam', 'adamw')


def schedule(cfg, peak_lr):
  """Linear warmup to peak_lr, then constant or cosine decay to
  peak_lr x end_lr_fraction (default 0)."""
  sched = cfg.get('schedule', 'constant')
  warmup = cfg.get('warmup_steps', 0)
  if sched == 'constant':
    if not warmup:
      return lambda count: peak_lr * jnp.ones_like(count, jnp.float32)
    return lambda count: peak_lr * jnp.minimum(1.0, (count + 1) / warmup)
  if sched == 'cosine':
    # optax.warmup_cosine_decay_schedule, written out: optax's branches on
    # `peak_value == 0` in Python, which fails when peak_lr is traced (swept).
    w = max(warmup, 1)
    span = max(cfg.decay_steps - w, 1)

    end = cfg.get('end_lr_fraction', 0.0)  # GuppyLM: to 3e-5 = 0.1 x 3e-4

    def cosine(count):
      count = jnp.asarray(count, jnp.float32)
      frac = jnp.clip((count - w) / span, 0.0, 1.0)
      if end:
        decayed = peak_lr * end + (peak_lr - peak_lr * end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      else:  # the expression addy's recorded runs used
        decayed = peak_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      return jnp.where(count < w, peak_lr * count / w, decayed)
    return cosine
  raise ConfigError(f'optimizer.schedule: {sched!r} is not allowed; choose one of '
                    "['constant', 'cosine']")


def make(cfg, hp) -> optax.GradientTransformation:
  """Returns the run's optimizer. hp: dict of (traced) scalars, keys as below."""
  lr = schedule(cfg, hp['lr'])
  if cfg.name == 'sgd':
    inner = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=hp['momentum'])
    if 'weight_decay' in hp:
      inner = optax.chain(optax.add_decayed_weights(hp['weight_decay']), inner)
  elif cfg.name in ('adam', 'adamw'):
    inner = optax.inject_hyperparams(optax.adamw)(
        learning_rate=lr, b1=hp['b1'], b2=hp['b2'], eps=cfg.eps,
        weight_decay=hp['weight_decay'] if cfg.name == 'adamw' else 0.0)
  else:
    raise ConfigError(f'optimizer.name: {cfg.name!r} is not allowed; choose one of '
                      f'{list(NAMES)}')
  parts = []
  if 'grokfast_lambda' in cfg:  # on the raw gradients, before clipping and Adam
    parts.append(grokfast.ema(hp['grokfast_alpha'], hp['grokfast_lambda']))
  if cfg.get('grad_clip', 0.0):
    parts.append(optax.clip_by_global_norm(cfg.grad_clip))
  parts.append(inner)
  return optax.chain(*parts) if len(parts) > 1 else inner


def momentum_unread(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """tx for momentum 0: the same state (so checkpoints keep their layout),
  but every momentum trace is fed to the update as zeros and kept as it was,
  never rewritten. With momentum 0 the update g + 0 * trace is g either way;
  what goes is the trace's read and write, ~7% of a Timmy step at 1,024 runs.
  (The saved trace then stays at its initial zeros instead of the last gradient.)"""
  is_trace = lambda s: isinstance(s, optax.TraceState)

  def update(updates, state, params=None):
    zeroed = jax.tree.map(lambda s: optax.TraceState(trace=jax.tree.map(jnp.zeros_like, s.trace))
                          if is_trace(s) else s, state, is_leaf=is_trace)
    updates, new = tx.update(updates, zeroed, params)
    return updates, jax.tree.map(lambda n, old: old if is_trace(n) else n, new, state,
                                 is_leaf=is_trace)
  return optax.GradientTransformation(tx.init, update)


def current_lr(opt_state):
  """The learning rate inject_hyperparams used for the last update."""
  for node in jax.tree.leaves(opt_state, is_leaf=lambda n: hasattr(n, 'hyperparams')):
    if hasattr(node, 'hyperparams'):
      return node.hyperparams['learning_rate']
  return jnp.nan
