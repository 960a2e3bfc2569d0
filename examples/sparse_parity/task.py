"""The k-sparse parity of n bits as a tinyjax task (Barak et al. 2022).

x is uniform in {-1, +1}^n, the label is the product of x over the hidden set
S = the first k coordinates (which k does not matter: the MLP and its init are
symmetric in the input coordinates, so any S is this one relabelled).

As a tinyjax batch (tinyjax.tasks.base): a row is the n bits as tokens ('-' =
-1, '+' = +1), and the only scored target is the label, at the last position
(y = its token, mask 1 there, 0 elsewhere): loss and accuracy are the label's.

Training draws fresh samples every step (online SGD, as the paper does): the
source below has nothing on the device, and each batch is drawn inside the
jitted step from the run's key and the step number, so every seed sees its own
stream and a resumed run sees exactly the same one. The test split is fixed:
`test_rows` samples drawn once from `data_seed`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import tasks

BITS = ('-', '+')  # token 0 = -1, token 1 = +1


def rows(bits_NxT, k: int, xp=jnp):
  """The batch of bit rows (0/1 tokens): label = parity of the first k bits."""
  n, t = bits_NxT.shape
  # The product of the +-1 values is +1 iff an even number of S's bits are -1.
  label_N = ((k - bits_NxT[:, :k].sum(1)) % 2 == 0).astype(np.int32)
  last_NxT = xp.broadcast_to(xp.arange(t) == t - 1, (n, t))
  return {'x_NxT': bits_NxT.astype(np.int32),
          'y_NxT': xp.where(last_NxT, label_N[:, None], 0).astype(np.int32),
          'mask_NxT': last_NxT.astype(np.float32),
          'cls_NxT': xp.where(last_NxT, 0, -1).astype(np.int32),
          'valid_NxT': xp.ones((n, t), np.float32)}


@dataclasses.dataclass
class FreshParity:
  """A batch source (arrays / batch / evaluate, as tinyjax.tasks.Split) whose
  every batch is new samples drawn from the key."""
  n: int
  k: int
  eval_rows: int = 1000

  @property
  def seq_len(self) -> int:
    return self.n

  def arrays(self) -> dict:
    return {}  # nothing to put on the device

  def batch(self, arrays, key, step, batch_size: int):
    del arrays
    bits = jax.random.bernoulli(jax.random.fold_in(key, step), 0.5, (batch_size, self.n))
    return rows(bits.astype(jnp.int32), self.k)

  def evaluate(self, metrics_fn, arrays, key):
    return metrics_fn(self.batch(arrays, key, 0, self.eval_rows))


def hinge(logits_BxTxV, y_BxT):
  """max(0, 1 - y f) with y = +-1 and f = logit('+') - logit('-'): the model's
  margin (the per-target loss, Task.loss)."""
  f_BxT = logits_BxTxV[..., 1] - logits_BxTxV[..., 0]
  return jnp.maximum(0.0, 1.0 - (2 * y_BxT - 1) * f_BxT)


def parity_task(cfg) -> tasks.Task:
  """cfg: n, k, test_rows, data_seed, loss ('hinge' or 'ce')."""
  if not 1 <= cfg.k <= cfg.n:
    raise tasks.ConfigError(f'task.k: {cfg.k} is not allowed; use 1 <= k <= n = {cfg.n}')
  if cfg.loss not in ('hinge', 'ce'):
    raise tasks.ConfigError(f"task.loss: {cfg.loss!r} is not allowed; choose 'hinge' or 'ce'")
  bits = np.random.default_rng(cfg.data_seed).integers(0, 2, (cfg.test_rows, cfg.n))
  test = tasks.Split(**rows(bits, cfg.k, xp=np))
  return tasks.Task(vocab=tasks.Vocab(BITS), train=FreshParity(cfg.n, cfg.k),
                    evals={'test': test}, class_names=('label',), prompts=(), expected={},
                    loss=hinge if cfg.loss == 'hinge' else None)
