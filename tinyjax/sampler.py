"""One sampler for every model: prefill, then KV-cached decoding in a loop.

`sample(model, prompts, n_new, key, settings)` decodes a batch of right-padded
prompts of different lengths at once, for ONE run (Program vmaps it over runs):

  1. prefill: the whole padded prompt batch in one cached forward pass; row i's
     first new token comes from the logits at its last prompt position;
  2. decode: one token per step against the cache (`model.decode`), inside a
     `lax.while_loop` that stops when every row has hit a stop token or
     `n_new` tokens;
  3. slide (models with learned positions and a context `window`, as
     tiny-llm's generate crops to the last 128 tokens): once a row's next
     position would fall outside the window, every further token runs the
     plain forward pass over that row's last `window` tokens.

Choosing a token (`pick`): temperature 0 = greedy; else softmax sampling at the
temperature, restricted to the top_k logits (0 = all) and to the top_p
nucleus (1.0 = all). The settings are traced values, so one compiled sampler
serves every temperature, k and p. Randomness comes only from the explicit
key (step j uses fold_in(key, j)): same key, same text.

A constraint (logits-mask hook) restricts the choice at every step:
  constraint.init(n_prompts) -> state       (any pytree)
  constraint.allowed(state) -> bool[P, V]   tokens allowed next
  constraint.update(state, tok_P) -> state  after each chosen token
Pillmish's Pilish decoding is one (the n-th word's length is pi's n-th digit).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Settings:
  temperature: float = 0.0  # 0 = greedy
  top_k: int = 0            # 0 = no top-k cut
  top_p: float = 1.0        # 1.0 = no nucleus cut

  def arrays(self):
    return {'temperature': np.float32(self.temperature), 'top_k': np.int32(self.top_k),
            'top_p': np.float32(self.top_p)}


GREEDY = Settings()


def pick(logits_PxV, key, s, allowed_PxV=None):
  """The next token of every row under settings s (arrays of Settings)."""
  logits_PxV = logits_PxV.astype(jnp.float32)
  neg = jnp.finfo(jnp.float32).min
  if allowed_PxV is not None:
    logits_PxV = jnp.where(allowed_PxV, logits_PxV, neg)
  greedy_P = logits_PxV.argmax(-1)
  v = logits_PxV.shape[-1]
  z_PxV = logits_PxV / jnp.maximum(s['temperature'], 1e-6)
  desc_PxV = -jnp.sort(-z_PxV, axis=-1)
  k = jnp.where(s['top_k'] > 0, jnp.clip(s['top_k'], 1, v), v)
  kth_Px1 = jnp.take_along_axis(desc_PxV, jnp.broadcast_to(k - 1, (z_PxV.shape[0], 1)), -1)
  z_PxV = jnp.where(z_PxV >= kth_Px1, z_PxV, neg)
  # Nucleus: the most probable tokens whose mass before them is < top_p.
  p_desc_PxV = jax.nn.softmax(jnp.where(desc_PxV >= kth_Px1, desc_PxV, neg), -1)
  before_PxV = jnp.cumsum(p_desc_PxV, -1) - p_desc_PxV
  kept_PxV = before_PxV < s['top_p']
  floor_Px1 = jnp.min(jnp.where(kept_PxV, desc_PxV, jnp.inf), -1, keepdims=True)
  z_PxV = jnp.where(z_PxV >= floor_Px1, z_PxV, neg)
  sampled_P = jax.random.categorical(key, z_PxV, axis=-1)
  return jnp.where(s['temperature'] > 0, sampled_P, greedy_P).astype(jnp.int32)


def sample(model, prompt_PxW, length_P, n_new: int, key, settings,
           stop_ids=(), window: int = 0, constraint=None):
  """New tokens after each prompt, for one model (traceable; vmap over runs).

  Args:
    model: an NNX model with init_cache / decode / __call__.
    prompt_PxW: right-padded prompt tokens; length_P: their lengths (>= 1).
    n_new: tokens to generate (static).
    key: PRNG key; settings: Settings.arrays() (traced values).
    stop_ids: tokens that end a row (EOS); a stopped row repeats its stop token.
    window: the model's context for learned positions (0 = unbounded).
    constraint: optional logits-mask hook (see the module docstring).
  Returns:
    tokens_PxN (int32) and count_P: the new tokens of each row up to and
    including its stop token.
  """
  n_p, width = prompt_PxW.shape
  length_P = jnp.asarray(length_P, jnp.int32)
  total = width + n_new
  size = min(total, window) if window else total
  stop = jnp.asarray(stop_ids, jnp.int32) if len(stop_ids) else None
  rows = jnp.arange(n_p)
  cst = constraint.init(n_p) if constraint is not None else None

  def choose(logits_PxV, j, cst):
    allowed = constraint.allowed(cst) if constraint is not None else None
    tok_P = pick(logits_PxV, jax.random.fold_in(key, j), settings, allowed)
    if constraint is not None:
      cst = constraint.update(cst, tok_P)
    return tok_P, cst

  def emit(carry, tok_P):
    """Writes token j of every row (its stop token again once it has stopped)."""
    j, buf_PxT, done_P, last_P, cst, cache = carry
    tok_P = jnp.where(done_P, last_P, tok_P)
    buf_PxT = buf_PxT.at[rows, length_P + j].set(tok_P)
    hit_P = jnp.isin(tok_P, stop) if stop is not None else jnp.zeros((n_p,), bool)
    return j + 1, buf_PxT, done_P | hit_P, tok_P, cst, cache

  buf_PxT = jnp.zeros((n_p, total), jnp.int32).at[:, :width].set(prompt_PxW)
  cache = model.init_cache(n_p, size)
  logits_PxWxV, cache = model.decode(prompt_PxW[:, :size], jnp.zeros((n_p,), jnp.int32), cache)
  first_PxV = logits_PxWxV[rows, length_P - 1]
  tok_P, cst = choose(first_PxV, 0, cst)
  done0 = jnp.zeros((n_p,), bool)
  carry = emit((jnp.int32(0), buf_PxT, done0, tok_P, cst, cache), tok_P)

  def going(c):
    return (c[0] < n_new) & ~c[2].all()

  # Cached steps while every row's newest token still has a position < size.
  cached_until = size - width if window else n_new

  def cached_step(c):
    j, buf_PxT, done_P, last_P, cst, cache = c
    logits_Px1xV, cache = model.decode(last_P[:, None], length_P + j - 1, cache)
    tok_P, cst = choose(logits_Px1xV[:, 0], j, cst)
    return emit((j, buf_PxT, done_P, last_P, cst, cache), tok_P)

  carry = jax.lax.while_loop(lambda c: going(c) & (c[0] < cached_until), cached_step, carry)

  if window:
    def slide_step(c):
      j, buf_PxT, done_P, last_P, cst, cache = c
      nxt_P = length_P + j  # the position being predicted
      start_P = jnp.maximum(nxt_P - window, 0)
      win_PxS = jax.vmap(lambda b, s0: jax.lax.dynamic_slice(b, (s0,), (window,)))(
          jnp.pad(buf_PxT, ((0, 0), (0, window))), start_P)
      logits_PxSxV, _ = model(win_PxS)
      tok_P, cst = choose(logits_PxSxV[rows, nxt_P - 1 - start_P], j, cst)
      return emit((j, buf_PxT, done_P, last_P, cst, cache), tok_P)

    carry = jax.lax.while_loop(going, slide_step, carry)

  j, buf_PxT, done_P, _, _, _ = carry
  new_PxN = jnp.take_along_axis(buf_PxT, length_P[:, None] + jnp.arange(n_new)[None, :], 1)
  # Rows cut short by the early exit: fill with their last token.
  idx_N = jnp.arange(n_new)
  last_P = jnp.take_along_axis(new_PxN, jnp.maximum(j - 1, 0)[None, None].repeat(n_p, 0), 1)
  new_PxN = jnp.where(idx_N[None, :] < j, new_PxN, last_P)
  if stop is not None:
    hit_PxN = jnp.isin(new_PxN, stop) & (idx_N[None, :] < j)
    first_P = jnp.where(hit_PxN.any(-1), hit_PxN.argmax(-1) + 1, j)
  else:
    first_P = jnp.full((n_p,), j)
  return new_PxN, first_P.astype(jnp.int32)
