"""Flax NNX models. Every model maps tokens_BxT -> (logits_BxTxV, aux), and
decodes with a cache: init_cache(batch, size), decode(tokens_BxT, pos_B, cache)
-> (logits_BxTxV, cache) (tinyjax.sampler).

aux holds what the metrics need from inside the forward pass:
  'attn_entropy_LxBxHxT': entropy (nats) of each head's attention distribution
  per query position, and 'attn_first_LxBxHxT': its weight on position 0
  (transformers only; absent for models without attention).

Models are built from `config.model` plus the vocabulary size and the longest
sequence of the task; `MODELS` names the built-ins, and `model.name` may name
your own class instead (the contract: tinyjax.extend.ModelClass).
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
  return sinusoidal_at(jnp.arange(num_positions), d)


def sinusoidal_at(positions, d: int) -> jax.Array:
  """sinusoidal_positions at integer positions of any shape: [..., d]."""
  t_Tx1 = jnp.asarray(positions, jnp.float32)[..., None]
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


def _torch_uniform(fan_in):
  """PyTorch's nn.Linear default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                 -bound, bound)


def _dense(d_in, d_out, bias, cfg, rngs, std=None):
  if cfg.get('init', 'normal') == 'torch':
    init = _torch_uniform(d_in)
    return nnx.Linear(d_in, d_out, use_bias=bias, rngs=rngs, kernel_init=init,
                      bias_init=init)
  return nnx.Linear(d_in, d_out, use_bias=bias, rngs=rngs,
                    kernel_init=nnx.initializers.normal(std or cfg.init_std),
                    bias_init=nnx.initializers.zeros_init())


def _embed_init(cfg):
  """torch: nn.Embedding's N(0, 1); else N(0, init_std)."""
  std = 1.0 if cfg.get('init', 'normal') == 'torch' else cfg.init_std
  return nnx.initializers.normal(std)


class Dropout:
  """Inverted dropout at `rate` with a fresh key per call site, folded from
  `key` (the run's key for this step: vmapped seeds differ, resume is exact).
  Off when key is None (evaluation, generation) or rate is 0."""

  def __init__(self, rate: float, key=None):
    self.rate, self.key, self.site = rate, key, 0

  def __call__(self, x):
    if self.key is None or not self.rate:
      return x
    self.site += 1
    keep = jax.random.bernoulli(jax.random.fold_in(self.key, self.site), 1.0 - self.rate,
                                x.shape)
    return jnp.where(keep, x / (1.0 - self.rate), 0.0)


OFF = Dropout(0.0)


class Attention(nnx.Module):
  """Causal multi-head self-attention; heads are column slices of Q/K/V."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.n_heads = cfg.n_heads
    self.q = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.k = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.v = _dense(d, d, cfg.attn_bias, cfg, rngs)
    self.o = _dense(d, d, cfg.get('attn_out_bias', cfg.attn_bias), cfg, rngs)
    self.out_dropout = cfg.get('attn_out_dropout', True)  # GuppyLM has none there

  def _qkv(self, x_BxTxD):
    b, t, d = x_BxTxD.shape
    split = lambda y: y.reshape(b, t, self.n_heads, d // self.n_heads)
    return tuple(split(f(x_BxTxD)) for f in (self.q, self.k, self.v))

  def __call__(self, x_BxTxD, probs=False, drop=OFF):
    """(out_BxTxD, entropy_BxHxT, first_BxHxT: the weight on position 0), plus
    the weights p_BxHxTxT if probs."""
    b, t, d = x_BxTxD.shape
    h = self.n_heads
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = self._qkv(x_BxTxD)
    s_BxHxTxT = jnp.einsum('bthk,bshk->bhts', q_BxTxHxK, k_BxTxHxK) / math.sqrt(d // h)
    causal_TxT = jnp.tril(jnp.ones((t, t), bool))
    s_BxHxTxT = jnp.where(causal_TxT, s_BxHxTxT, jnp.finfo(s_BxHxTxT.dtype).min)
    p_BxHxTxT = jax.nn.softmax(s_BxHxTxT, axis=-1)
    out_BxTxHxK = jnp.einsum('bhts,bshk->bthk', drop(p_BxHxTxT), v_BxTxHxK)
    p = jax.lax.stop_gradient(p_BxHxTxT)
    entropy_BxHxT = -jnp.sum(jnp.where(causal_TxT, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)
    out_BxTxD = self.o(out_BxTxHxK.reshape(b, t, d))
    out_BxTxD = drop(out_BxTxD) if self.out_dropout else out_BxTxD
    stats = (entropy_BxHxT, p[..., 0])
    return (out_BxTxD, *stats, p) if probs else (out_BxTxD, *stats)

  def decode(self, x_BxTxD, pos_BxT, cache):
    """Attention of T new tokens at positions pos_BxT over a KV cache.

    cache: {'k', 'v': [B, H, S, K]} (heads first: the score and value
    contractions then need no transpose of the cache); the new keys and values
    are written at their positions (a position >= S is dropped), and each
    query attends to the cached positions <= its own. Returns (out_BxTxD, cache).
    """
    b, t, d = x_BxTxD.shape
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = self._qkv(x_BxTxD)
    k_BxHxSxK = write_at(cache['k'], pos_BxT, k_BxTxHxK.transpose(0, 2, 1, 3), axis=2)
    v_BxHxSxK = write_at(cache['v'], pos_BxT, v_BxTxHxK.transpose(0, 2, 1, 3), axis=2)
    s_BxHxTxS = (jnp.einsum('bthk,bhsk->bhts', q_BxTxHxK, k_BxHxSxK)
                 / math.sqrt(d // self.n_heads))
    seen_BxTxS = jnp.arange(k_BxHxSxK.shape[2])[None, None, :] <= pos_BxT[:, :, None]
    s_BxHxTxS = jnp.where(seen_BxTxS[:, None], s_BxHxTxS, jnp.finfo(s_BxHxTxS.dtype).min)
    p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1)
    out_BxTxHxK = jnp.einsum('bhts,bhsk->bthk', p_BxHxTxS, v_BxHxSxK)
    return self.o(out_BxTxHxK.reshape(b, t, d)), {'k': k_BxHxSxK, 'v': v_BxHxSxK}


def write_at(cache, pos_BxT, new, axis: int = 1):
  """cache with row b's entries at positions pos_BxT[b] along `axis` replaced
  by new[b] (which has T entries on that axis); positions >= S are dropped.
  A one-hot select, not a scatter (slow under vmap on XLA:CPU); decoding reads
  the whole cache anyway."""
  b, s = cache.shape[0], cache.shape[axis]
  hit_BxTxS = pos_BxT[:, :, None] == jnp.arange(s)[None, None, :]
  if pos_BxT.shape[1] == 1:  # one new token a row: a broadcast, no contraction
    placed = jnp.broadcast_to(new, cache.shape)
  else:
    placed = jnp.moveaxis(jnp.einsum('bts,bt...->bs...', hit_BxTxS.astype(new.dtype),
                                     jnp.moveaxis(new, axis, 1)), 1, axis)
  shape = [b] + [1] * (cache.ndim - 1)
  shape[axis] = s
  return jnp.where(hit_BxTxS.any(1).reshape(shape), placed, cache)


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

  def __call__(self, x_BxTxD, probs=False, drop=OFF):
    a_BxTxD, *stats = self.attn(self.norm1(x_BxTxD), probs, drop)
    return self._mlp(x_BxTxD + a_BxTxD, drop), *stats

  def _mlp(self, x_BxTxD, drop=OFF):
    if self.mlp is not None:
      x_BxTxD = x_BxTxD + drop(self.mlp(self.norm2(x_BxTxD)))
    return x_BxTxD

  def decode(self, x_BxTxD, pos_BxT, cache):
    a_BxTxD, cache = self.attn.decode(self.norm1(x_BxTxD), pos_BxT, cache)
    return self._mlp(x_BxTxD + a_BxTxD), cache


class Transformer(nnx.Module):
  """Decoder-only transformer.

  Options (config.model): d_model, n_layers, n_heads, d_mlp, activation,
  positions ('sinusoidal' | 'learned' | 'none'), embed_scale (x sqrt(d_model)),
  norm ('standardize' | 'layernorm' | 'rmsnorm' | 'none'), norm_eps,
  final_norm, attn_bias, attn_out_bias (optional; absent = attn_bias), mlp_bias,
  unembed_bias, tie_embeddings, dropout (optional; 0 = off), attn_out_dropout
  (optional, default True: dropout on the attention output too), vocab_size
  (optional; 0 = the tokenizer's; GuppyLM keeps 4,096 rows for 2,418 tokens),
  init ('normal': N(0, init_std) matrices and
  embeddings, zero biases; 'torch': PyTorch's defaults, N(0, 1) embeddings and
  U(+-1/sqrt(fan_in)) Linear weights and biases), init_std, unembed_init_std
  (optional; 0 or absent = init_std).

  `decode(tokens, pos, cache)` runs new tokens against a KV cache
  (`init_cache`); tinyjax.sampler uses it.
  """

  def __init__(self, cfg, vocab_size: int, max_len: int, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.d_model, self.positions = d, cfg.positions
    self.embed_scale, self.tie_embeddings = cfg.embed_scale, cfg.tie_embeddings
    self.max_len = max_len
    self.dropout = cfg.get('dropout', 0.0)
    self.embed = nnx.Embed(vocab_size, d, rngs=rngs, embedding_init=_embed_init(cfg))
    if cfg.positions == 'learned':
      self.pos_embed = nnx.Param(_embed_init(cfg)(rngs.params(), (max_len, d)))
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.final_norm = Norm(cfg.norm if cfg.final_norm else 'none', d, cfg.norm_eps,
                           rngs=rngs)
    if not cfg.tie_embeddings:
      # Optional own std: Nanda et al. init W_U with 1/sqrt(d_vocab), the rest
      # with 1/sqrt(d_model).
      self.unembed = _dense(d, vocab_size, cfg.unembed_bias, cfg, rngs,
                            std=cfg.get('unembed_init_std', 0.0))

  @classmethod
  def validate_config(cls, cfg, vocab_size: int, max_len: int):
    del vocab_size
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

  def _embed(self, tokens_BxT, pos_BxT=None):
    """Token (+ position) embeddings; positions 0..T-1 unless pos_BxT is given."""
    t = tokens_BxT.shape[1]
    x_BxTxD = self.embed(tokens_BxT)
    if self.embed_scale:
      x_BxTxD = x_BxTxD * math.sqrt(self.d_model)
    if self.positions == 'sinusoidal':
      if pos_BxT is None:
        x_BxTxD = x_BxTxD + sinusoidal_positions(t, self.d_model)
      else:
        x_BxTxD = x_BxTxD + sinusoidal_at(pos_BxT, self.d_model)
    elif self.positions == 'learned':
      x_BxTxD = x_BxTxD + (self.pos_embed[...][:t] if pos_BxT is None
                           else self.pos_embed[...][pos_BxT])
    return x_BxTxD

  def _logits(self, x_BxTxD):
    x_BxTxD = self.final_norm(x_BxTxD)
    return (self.embed.attend(x_BxTxD) if self.tie_embeddings
            else self.unembed(x_BxTxD))

  def __call__(self, tokens_BxT, inspect=False, dropout_key=None):
    """inspect=True adds to aux the attention weights 'attn_LxBxHxTxT' and the
    final-normed hidden state 'hidden_BxTxD' (what the unembedding reads).
    dropout_key: training only, with model.dropout > 0 (GPT-2's sites: the
    embeddings, the attention weights, each residual branch's output)."""
    drop = Dropout(self.dropout, dropout_key)
    x_BxTxD = drop(self._embed(tokens_BxT))
    entropies, firsts, weights = [], [], []
    for block in self.blocks:
      x_BxTxD, entropy_BxHxT, first_BxHxT, *p = block(x_BxTxD, inspect, drop)
      entropies.append(entropy_BxHxT)
      firsts.append(first_BxHxT)
      weights += p
    aux = {'attn_entropy_LxBxHxT': jnp.stack(entropies),
           'attn_first_LxBxHxT': jnp.stack(firsts)}
    if inspect:
      aux['attn_LxBxHxTxT'] = jnp.stack(weights)
      aux['hidden_BxTxD'] = self.final_norm(x_BxTxD)
    return self._logits(x_BxTxD), aux

  # --------------------------------------------- KV-cached decoding (sampler) ---
  def init_cache(self, batch: int, size: int):
    """Empty keys and values for `size` positions, per layer."""
    h = self.blocks[0].attn.n_heads
    z = jnp.zeros((batch, h, size, self.d_model // h), jnp.float32)
    return [{'k': z, 'v': z} for _ in self.blocks]

  def decode(self, tokens_BxT, pos_B, cache):
    """Logits of T new tokens placed at positions pos_B.. of each row, reading
    and extending the cache: (logits_BxTxV, cache)."""
    pos_BxT = pos_B[:, None] + jnp.arange(tokens_BxT.shape[1])[None, :]
    x_BxTxD = self._embed(tokens_BxT, pos_BxT)
    new = []
    for block, c in zip(self.blocks, cache):
      x_BxTxD, c = block.decode(x_BxTxD, pos_BxT, c)
      new.append(c)
    return self._logits(x_BxTxD), new


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

  @classmethod
  def validate_config(cls, cfg, vocab_size: int, max_len: int):
    del vocab_size, max_len
    if cfg.activation not in ACTIVATIONS:
      raise ConfigError(f'model.activation: {cfg.activation!r} is not allowed; choose '
                        f'one of {list(ACTIVATIONS)}')
    for field in ('context', 'embed_dim', 'hidden_dim'):
      if cfg[field] < 1:
        raise ConfigError(f'model.{field}: {cfg[field]} is not allowed; use >= 1')

  def __call__(self, tokens_BxT):
    t = tokens_BxT.shape[1]
    e_BxTxE = self.embed(tokens_BxT)
    pad_BxSxE = jnp.pad(e_BxTxE, ((0, 0), (self.context - 1, 0), (0, 0)))
    # Slice k holds token t-context+1+k at position t: oldest first.
    window_BxTxCE = jnp.concatenate(
        [pad_BxSxE[:, k:k + t] for k in range(self.context)], axis=-1)
    h_BxTxH = self.act(self.hidden(window_BxTxCE))
    return self.out(h_BxTxH), {}

  def init_cache(self, batch: int, size: int):
    """The tokens so far (the window is all the model reads)."""
    return {'tokens': jnp.zeros((batch, size), jnp.int32)}

  def decode(self, tokens_BxT, pos_B, cache):
    b, t = tokens_BxT.shape
    pos_BxT = pos_B[:, None] + jnp.arange(t)[None, :]
    buf_BxS = write_at(cache['tokens'], pos_BxT, tokens_BxT)
    # Window k of query position p holds token p-context+1+k (zeros before 0).
    src_BxTxC = pos_BxT[:, :, None] - self.context + 1 + jnp.arange(self.context)
    ids_BxTxC = jnp.take_along_axis(buf_BxS[:, None, :], jnp.maximum(src_BxTxC, 0), axis=2)
    e_BxTxCxE = self.embed(ids_BxTxC) * (src_BxTxC >= 0)[..., None]
    h_BxTxH = self.act(self.hidden(e_BxTxCxE.reshape(b, t, -1)))
    return self.out(h_BxTxH), {'tokens': buf_BxS}


MODELS = {'transformer': Transformer, 'window_mlp': WindowMLP}

# Which config fields take which values; checked before anything is built.
CHOICES = {'positions': ('sinusoidal', 'learned', 'none'),
           'norm': ('standardize', 'layernorm', 'rmsnorm', 'none'),
           'activation': tuple(ACTIVATIONS)}


def validate(cfg, vocab_size: int, max_len: int):
  """The fields every model shares, then the model's own `validate_config`
  (if it has one). `model.name` is resolved by tinyjax.extend: a name from
  MODELS, or your own 'package.module:attr' / 'file.py:attr'."""
  from tinyjax import extend
  cls = extend.resolve('model', cfg.name, MODELS)
  if cfg.get('init', 'normal') not in ('normal', 'torch'):
    raise ConfigError(f"model.init: {cfg.init!r} is not allowed; choose one of ['normal', 'torch']")
  if not 0.0 <= cfg.get('dropout', 0.0) < 1.0:
    raise ConfigError(f'model.dropout: {cfg.dropout} is not allowed; use a rate in [0, 1)')
  if cfg.get('dropout', 0.0) and not extend.accepts(getattr(cls, '__call__', cls), 'dropout_key'):
    raise ConfigError(f'model.dropout: {cfg.dropout} is not allowed for model {cfg.name!r}, '
                      'which takes no dropout_key (use 0)')
  if cfg.get('vocab_size', 0) and cfg.vocab_size < vocab_size:
    raise ConfigError(f'model.vocab_size: {cfg.vocab_size} is smaller than the tokenizer\'s '
                      f'{vocab_size} tokens; use 0 (the tokenizer\'s) or >= {vocab_size}')
  if hasattr(cls, 'validate_config'):
    cls.validate_config(cfg, vocab_size, max_len)


def build(cfg, vocab_size: int, max_len: int, rngs: nnx.Rngs) -> nnx.Module:
  from tinyjax import extend
  return extend.resolve('model', cfg.name, MODELS)(cfg, vocab_size, cfg.get('max_len') or max_len,
                                           rngs=rngs)


def count_params(state) -> int:
  return sum(x.size for x in jax.tree.leaves(state))
