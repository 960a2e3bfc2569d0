"""Flax NNX models. Every model maps tokens_BxT -> (logits_BxTxV, aux).

aux holds what the metrics need from inside the forward pass:
  'attn_entropy_LxBxHxT': entropy (nats) of each head's attention distribution
  per query position (transformers only; absent for models without attention).

Models are built from `config.model` plus the vocabulary size and the longest
sequence of the task; `MODELS` is the registry configs choose from by name.
"""

from __future__ import annotations

import math

from flax import nnx
import jax
import jax.numpy as jnp

from tinyjax.tasks import ConfigError

ACTIVATIONS = {'relu': jax.nn.relu, 'gelu': jax.nn.gelu, 'silu': jax.nn.silu,
               'tanh': jnp.tanh}


def sinusoidal_positions(num_positions: int, d: int) -> jax.Array:
  """angle = t / 10000^(pair / d) with pair = i - i mod 2; sin even, cos odd."""
  t_Tx1 = jnp.arange(num_positions, dtype=jnp.float32)[:, None]
  i_D = jnp.arange(d)
  pair_D = (i_D - i_D % 2).astype(jnp.float32)
  angle_TxD = t_Tx1 / jnp.power(10000.0, pair_D / d)
  return jnp.where(i_D % 2 == 0, jnp.sin(angle_TxD), jnp.cos(angle_TxD))


class Norm(nnx.Module):
  """'standardize': (x - mean) / (std + eps), no parameters (Timmy);
  'layernorm': with scale and bias; 'rmsnorm': with scale; 'none': identity."""

  def __init__(self, kind: str, d: int, eps: float, *, rngs: nnx.Rngs):
    self.kind, self.eps = kind, eps
    if kind == 'layernorm':
      self.ln = nnx.LayerNorm(d, epsilon=eps, rngs=rngs)
    elif kind == 'rmsnorm':
      self.ln = nnx.RMSNorm(d, epsilon=eps, rngs=rngs)

  def __call__(self, x_BxTxD):
    if self.kind == 'standardize':
      mean = x_BxTxD.mean(-1, keepdims=True)
      std = jnp.sqrt(((x_BxTxD - mean) ** 2).mean(-1, keepdims=True))
      return (x_BxTxD - mean) / (std + self.eps)
    if self.kind in ('layernorm', 'rmsnorm'):
      return self.ln(x_BxTxD)
    return x_BxTxD


def _dense(d_in, d_out, bias, cfg, rngs, std=None):
  return nnx.Linear(d_in, d_out, use_bias=bias, rngs=rngs,
                    kernel_init=nnx.initializers.normal(std or cfg.init_std),
                    bias_init=nnx.initializers.zeros_init())


class Attention(nnx.Module):
  """Causal multi-head self-attention; heads are column slices of Q/K/V."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.n_heads = cfg.n_heads
    self.q = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.k = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.v = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.o = _dense(d, d, cfg.attn_bias, cfg, rngs)

  def __call__(self, x_BxTxD):
    b, t, d = x_BxTxD.shape
    h = self.n_heads
    split = lambda y: y.reshape(b, t, h, d // h)
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (split(f(x_BxTxD)) for f in (self.q, self.k, self.v))
    s_BxHxTxT = jnp.einsum('bthk,bshk->bhts', q_BxTxHxK, k_BxTxHxK) / math.sqrt(d // h)
    causal_TxT = jnp.tril(jnp.ones((t, t), bool))
    s_BxHxTxT = jnp.where(causal_TxT, s_BxHxTxT, jnp.finfo(s_BxHxTxT.dtype).min)
    p_BxHxTxT = jax.nn.softmax(s_BxHxTxT, axis=-1)
    out_BxTxHxK = jnp.einsum('bhts,bshk->bthk', p_BxHxTxT, v_BxTxHxK)
    p = jax.lax.stop_gradient(p_BxHxTxT)
    entropy_BxHxT = -jnp.sum(jnp.where(causal_TxT, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)
    return self.o(out_BxTxHxK.reshape(b, t, d)), entropy_BxHxT


class MLP(nnx.Module):

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    self.up = _dense(cfg.d_model, cfg.d_mlp, cfg.mlp_bias, cfg, rngs)
    self.down = _dense(cfg.d_mlp, cfg.d_model, cfg.mlp_bias, cfg, rngs)
    self.act = ACTIVATIONS[cfg.activation]

  def __call__(self, x_BxTxD):
    return self.down(self.act(self.up(x_BxTxD)))


class Block(nnx.Module):
  """Pre-norm: x + Attn(norm(x)), then x + MLP(norm(x))."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    self.norm1 = Norm(cfg.norm, cfg.d_model, cfg.norm_eps, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.norm2 = Norm(cfg.norm, cfg.d_model, cfg.norm_eps, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs) if cfg.d_mlp > 0 else None

  def __call__(self, x_BxTxD):
    a_BxTxD, entropy_BxHxT = self.attn(self.norm1(x_BxTxD))
    x_BxTxD = x_BxTxD + a_BxTxD
    if self.mlp is not None:
      x_BxTxD = x_BxTxD + self.mlp(self.norm2(x_BxTxD))
    return x_BxTxD, entropy_BxHxT


class Transformer(nnx.Module):
  """Decoder-only transformer.

  Options (config.model): d_model, n_layers, n_heads, d_mlp, activation,
  positions ('sinusoidal' | 'learned' | 'none'), embed_scale (x sqrt(d_model)),
  norm ('standardize' | 'layernorm' | 'rmsnorm' | 'none'), norm_eps,
  final_norm, attn_bias, mlp_bias, unembed_bias, tie_embeddings, init_std,
  unembed_init_std (optional; 0 or absent = init_std).
  """

  def __init__(self, cfg, vocab_size: int, max_len: int, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.d_model, self.positions = d, cfg.positions
    self.embed_scale, self.tie_embeddings = cfg.embed_scale, cfg.tie_embeddings
    self.embed = nnx.Embed(vocab_size, d, rngs=rngs,
                           embedding_init=nnx.initializers.normal(cfg.init_std))
    if cfg.positions == 'learned':
      self.pos_embed = nnx.Param(
          nnx.initializers.normal(cfg.init_std)(rngs.params(), (max_len, d)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.final_norm = Norm(cfg.norm if cfg.final_norm else 'none', d, cfg.norm_eps,
                           rngs=rngs)
    if not cfg.tie_embeddings:
      # Optional own std: Nanda et al. init W_U with 1/sqrt(d_vocab), the rest
      # with 1/sqrt(d_model).
      self.unembed = _dense(d, vocab_size, cfg.unembed_bias, cfg, rngs,
                            std=cfg.get('unembed_init_std', 0.0))

  def __call__(self, tokens_BxT):
    t = tokens_BxT.shape[1]
    x_BxTxD = self.embed(tokens_BxT)
    if self.embed_scale:
      x_BxTxD = x_BxTxD * math.sqrt(self.d_model)
    if self.positions == 'sinusoidal':
      x_BxTxD = x_BxTxD + sinusoidal_positions(t, self.d_model)
    elif self.positions == 'learned':
      x_BxTxD = x_BxTxD + self.pos_embed[...][:t]
    entropies = []
    for block in self.blocks:
      x_BxTxD, entropy_BxHxT = block(x_BxTxD)
      entropies.append(entropy_BxHxT)
    x_BxTxD = self.final_norm(x_BxTxD)
    logits_BxTxV = (self.embed.attend(x_BxTxD) if self.tie_embeddings
                    else self.unembed(x_BxTxD))
    return logits_BxTxV, {'attn_entropy_LxBxHxT': jnp.stack(entropies)}


class WindowMLP(nnx.Module):
  """Bengio-style MLP language model over a fixed window (babyLLM).

  The next token after position t is predicted from the embeddings of tokens
  t-context+1..t, concatenated oldest first, through one hidden layer. Every
  position predicts, so the model has the same interface as the transformer;
  windows reaching before the sequence start see zero vectors there (a task
  that wants only full windows masks those targets, see tasks.addition_task).

  Options (config.model): context, embed_dim, hidden_dim, activation,
  embed_init_std (embeddings N(0, std)); dense kernels are N(0, 1/fan_in)
  (LeCun), biases 0.
  """

  def __init__(self, cfg, vocab_size: int, max_len: int, *, rngs: nnx.Rngs):
    del max_len  # the window, not the sequence, bounds what the model sees
    self.context = cfg.context
    self.embed = nnx.Embed(vocab_size, cfg.embed_dim, rngs=rngs,
                           embedding_init=nnx.initializers.normal(cfg.embed_init_std))
    lecun = nnx.initializers.variance_scaling(1.0, 'fan_in', 'normal')
    zeros = nnx.initializers.zeros_init()
    self.hidden = nnx.Linear(cfg.context * cfg.embed_dim, cfg.hidden_dim, rngs=rngs,
                             kernel_init=lecun, bias_init=zeros)
    self.out = nnx.Linear(cfg.hidden_dim, vocab_size, rngs=rngs,
                          kernel_init=lecun, bias_init=zeros)
    self.act = ACTIVATIONS[cfg.activation]

  def __call__(self, tokens_BxT):
    t = tokens_BxT.shape[1]
    e_BxTxE = self.embed(tokens_BxT)
    pad_BxSxE = jnp.pad(e_BxTxE, ((0, 0), (self.context - 1, 0), (0, 0)))
    # Slice k holds token t-context+1+k at position t: oldest first.
    window_BxTxCE = jnp.concatenate(
        [pad_BxSxE[:, k:k + t] for k in range(self.context)], axis=-1)
    h_BxTxH = self.act(self.hidden(window_BxTxCE))
    return self.out(h_BxTxH), {}


MODELS = {'transformer': Transformer, 'window_mlp': WindowMLP}

# Which config fields take which values; checked before anything is built.
CHOICES = {'positions': ('sinusoidal', 'learned', 'none'),
           'norm': ('standardize', 'layernorm', 'rmsnorm', 'none'),
           'activation': tuple(ACTIVATIONS)}


def validate(cfg, vocab_size: int, max_len: int):
  if cfg.name not in MODELS:
    raise ConfigError(f'model.name: {cfg.name!r} is not a known model; choose one '
                      f'of {sorted(MODELS)}')
  if cfg.name == 'transformer':
    for field, allowed in CHOICES.items():
      if cfg[field] not in allowed:
        raise ConfigError(f'model.{field}: {cfg[field]!r} is not allowed; choose one '
                          f'of {list(allowed)}')
    for field in ('d_model', 'n_heads', 'n_layers'):
      if cfg[field] < 1:
        raise ConfigError(f'model.{field}: {cfg[field]} is not allowed; use >= 1')
    if cfg.d_model % cfg.n_heads:
      raise ConfigError(f'model.d_model: {cfg.d_model} is not divisible by '
                        f'model.n_heads={cfg.n_heads}')
    if cfg.positions == 'learned' and cfg.max_len and cfg.max_len < max_len:
      raise ConfigError(f'model.max_len: {cfg.max_len} is shorter than the task\'s '
                        f'sequences ({max_len} tokens)')
  if cfg.name == 'window_mlp':
    if cfg.activation not in ACTIVATIONS:
      raise ConfigError(f'model.activation: {cfg.activation!r} is not allowed; choose '
                        f'one of {list(ACTIVATIONS)}')
    for field in ('context', 'embed_dim', 'hidden_dim'):
      if cfg[field] < 1:
        raise ConfigError(f'model.{field}: {cfg[field]} is not allowed; use >= 1')


def build(cfg, vocab_size: int, max_len: int, rngs: nnx.Rngs) -> nnx.Module:
  return MODELS[cfg.name](cfg, vocab_size, cfg.get('max_len') or max_len, rngs=rngs)


def count_params(state) -> int:
  return sum(x.size for x in jax.tree.leaves(state))
