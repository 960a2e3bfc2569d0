"""Grokfast-EMA (Lee et al. 2024) as an optax gradient transformation.

Amplifies the slow (low-frequency) part of the gradient sequence:
  h_t = alpha * h_{t-1} + (1 - alpha) * g_t      (h_1 = g_1, as the paper's code)
  g'_t = g_t + lambda * h_t
and hands g'_t to the optimizer that follows it in the chain. alpha and lambda
may be traced scalars (sweepable in one compiled program); lambda = 0 returns
g_t exactly (the EMA is still kept, so that lambda can vary across vmapped runs).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class GrokfastState(NamedTuple):
  count: jax.Array  # int32: updates so far; the first one starts the EMA at g_1
  ema: optax.Updates


def ema(alpha, lamb) -> optax.GradientTransformation:
  """Grokfast-EMA with decay `alpha` (paper: 0.98) and gain `lamb` (paper: 2.0)."""

  def init_fn(params):
    return GrokfastState(count=jnp.zeros([], jnp.int32),
                         ema=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    first = state.count == 0
    # The reference code seeds the filter with the first gradient (no zero-init
    # bias), so h_1 = g_1 rather than (1 - alpha) * g_1.
    h = jax.tree.map(lambda h, g: jnp.where(first, g, alpha * h + (1 - alpha) * g),
                     state.ema, updates)
    out = jax.tree.map(lambda g, h: g + lamb * h, updates, h)
    return out, GrokfastState(count=optax.safe_increment(state.count), ema=h)

  return optax.GradientTransformation(init_fn, update_fn)
