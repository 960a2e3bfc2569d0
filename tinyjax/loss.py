"""Losses and the per-step metrics, all computed inside the jitted step.

Every function here takes the arrays of one run; the trainer vmaps them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_ce(logits_BxTxV, y_BxT):
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, y_BxT)


def masked_mean(x, w):
  """Weighted mean; NaN when nothing is weighted (the writer skips NaNs)."""
  total = w.sum()
  return jnp.where(total > 0, (x * w).sum() / jnp.maximum(total, 1e-30), jnp.nan)


def lm_metrics(logits_BxTxV, batch, class_names, aux, prefix='', token_loss=None):
  """Loss and accuracy, overall and per token class, plus attention entropy.

  The classes partition the scored targets, so sum_c n_c * loss/c / n == loss.
  Attention entropy is the mean over real query positions of each head.
  token_loss: the task's per-target loss (None: cross-entropy).
  """
  ce_BxT = (token_loss or token_ce)(logits_BxTxV, batch['y_NxT'])
  mask_BxT = batch['mask_NxT']
  correct_BxT = (logits_BxTxV.argmax(-1) == batch['y_NxT']).astype(jnp.float32)
  m = {f'{prefix}loss': masked_mean(ce_BxT, mask_BxT),
       f'{prefix}accuracy': masked_mean(correct_BxT, mask_BxT)}
  for c, name in enumerate(class_names):
    w_BxT = mask_BxT * (batch['cls_NxT'] == c)
    m[f'{prefix}loss/{name}'] = masked_mean(ce_BxT, w_BxT)
    m[f'{prefix}accuracy/{name}'] = masked_mean(correct_BxT, w_BxT)
  if 'attn_entropy_LxBxHxT' in aux:
    ent_LxBxHxT = aux['attn_entropy_LxBxHxT']
    valid_BxT = batch['valid_NxT']
    ent_LxH = (ent_LxBxHxT * valid_BxT[None, :, None, :]).sum((1, 3)) / valid_BxT.sum()
    m[f'{prefix}attention_entropy_LxH'] = ent_LxH
  return m


def global_norm(tree):
  return optax.global_norm(tree)


def by_module(params) -> dict[str, object]:
  """{name: subtree} per top-level module, per block for the blocks list."""
  out = {}
  for name, sub in params.items():
    if name == 'blocks':
      for i, block in sub.items():
        out[f'block{i}'] = block
    else:
      out[name] = sub
  return out


def layer_norms(params) -> dict[str, jax.Array]:
  """Weight norm per top-level module (per block for the blocks list)."""
  return {f'param_norm/{name}': global_norm(sub) for name, sub in by_module(params).items()}
