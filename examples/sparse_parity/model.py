"""A one-hidden-layer ReLU MLP on the +-1 bits: f(x) = w2 . relu(W1 x + b1) + b2.

The tinyjax model contract (tinyjax.extend.ModelClass): tokens_BxT -> (logits
_BxTxV, aux). The bits are the inputs (token 1 -> +1, token 0 -> -1), the margin
f is put out as the logits (0, f) of the tokens ('-', '+') at every position (the
task scores the last one), so accuracy is sign(f) = label and the task's hinge
loss reads f back as logit('+') - logit('-').

Init: PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)) for weights and biases.
No init_cache/decode: it reads a whole row at once, so it does not generate.
"""

from __future__ import annotations

import math

from flax import nnx
import jax
import jax.numpy as jnp


def _uniform(fan_in):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class ParityMLP(nnx.Module):
  """Options (config.model): width."""

  def __init__(self, cfg, vocab_size: int, max_len: int, *, rngs: nnx.Rngs):
    del vocab_size  # two tokens, one margin
    self.hidden = nnx.Linear(max_len, cfg.width, rngs=rngs, kernel_init=_uniform(max_len),
                             bias_init=_uniform(max_len))
    self.out = nnx.Linear(cfg.width, 1, rngs=rngs, kernel_init=_uniform(cfg.width),
                          bias_init=_uniform(cfg.width))

  @classmethod
  def validate_config(cls, cfg, vocab_size: int, max_len: int):
    from tinyjax.tasks import ConfigError
    if cfg.width < 1:
      raise ConfigError(f'model.width: {cfg.width} is not allowed; use >= 1')
    if vocab_size != 2:
      raise ConfigError(f'model.name: ParityMLP reads two tokens (-, +); the task has '
                        f'{vocab_size}')

  def __call__(self, tokens_BxT):
    x_BxN = 2.0 * tokens_BxT.astype(jnp.float32) - 1.0
    f_B = self.out(jax.nn.relu(self.hidden(x_BxN)))[:, 0]
    logits_Bx2 = jnp.stack([jnp.zeros_like(f_B), f_B], -1)
    return jnp.broadcast_to(logits_Bx2[:, None, :], (*tokens_BxT.shape, 2)), {}
