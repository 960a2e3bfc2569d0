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
serves every temperature > 0, k and p; greedy settings are None
(`Settings.arrays()`), for which the sampler compiles only the argmax (no
sort, softmax or draw: ~40% less to compile). Randomness comes only from the explicit
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
import jax.experimental
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Settings:
  temperature: float = 0.0  # 0 = greedy
  top_k: int = 0            # 0 = no top-k cut
  top_p: float = 1.0        # 1.0 = no nucleus cut

  def arrays(self):
    """The traced settings `pick` takes; None for greedy (temperature 0:
    k and p do not matter), which compiles the argmax alone."""
    if self.temperature <= 0:
      return None
    return {'temperature': np.float32(self.temperature), 'top_k': np.int32(self.top_k),
            'top_p': np.float32(self.top_p)}


GREEDY = Settings()


def pick(logits_PxV, key, s, allowed_PxV=None):
  """The next token of every row under settings s (Settings.arrays(); None:
  greedy)."""
  logits_PxV = logits_PxV.astype(jnp.float32)
  neg = jnp.finfo(jnp.float32).min
  if allowed_PxV is not None:
    logits_PxV = jnp.where(allowed_PxV, logits_PxV, neg)
  greedy_P = logits_PxV.argmax(-1)
  if s is None:
    return greedy_P.astype(jnp.int32)
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


class _Decoder:
  """The steps of one decoding, for one model; the loops are below."""

  def __init__(self, prompt_PxW, length_P, n_new, key, settings, stop_ids, window,
               constraint, on_token=None):
    self.prompt_PxW, self.n_new, self.key, self.settings = prompt_PxW, n_new, key, settings
    self.on_token = on_token
    self.length_P = jnp.asarray(length_P, jnp.int32)
    self.n_p, self.width = prompt_PxW.shape
    self.total = self.width + n_new
    self.window = window
    self.size = min(self.total, window) if window else self.total
    self.stop = jnp.asarray(stop_ids, jnp.int32) if len(stop_ids) else None
    self.constraint = constraint
    # Cached steps while every row's newest token has a position < size; then
    # (window only) the sliding steps.
    self.cached_until = self.size - self.width + 1 if window else n_new

  def _choose(self, logits_PxV, j, cst):
    c = self.constraint
    allowed = c.allowed(cst) if c is not None else None
    tok_P = pick(logits_PxV, jax.random.fold_in(self.key, j), self.settings, allowed)
    return tok_P, (c.update(cst, tok_P) if c is not None else cst)

  def _emit(self, j, carry, logits_PxV):
    """Chooses and writes token j of every row (a stopped row repeats its stop
    token). carry: (buf_PxT, done_P, last_P, constraint state, cache)."""
    buf_PxT, done_P, last_P, cst, cache = carry
    tok_P, cst = self._choose(logits_PxV, j, cst)
    tok_P = jnp.where(done_P, last_P, tok_P)
    buf_PxT = jnp.where(jnp.arange(self.total)[None, :] == (self.length_P + j)[:, None],
                        tok_P[:, None], buf_PxT)
    hit_P = jnp.isin(tok_P, self.stop) if self.stop is not None else jnp.zeros_like(done_P)
    if self.on_token is not None:  # streaming: the host sees each token as it is chosen
      jax.experimental.io_callback(self.on_token, None, tok_P, done_P, ordered=True)
    return buf_PxT, done_P | hit_P, tok_P, cst, cache

  def start(self, model):
    """Prefill the prompts and choose token 0: the carry for step 1."""
    n_p = self.n_p
    buf_PxT = jnp.zeros((n_p, self.total), jnp.int32).at[:, :self.width].set(self.prompt_PxW)
    cache = model.init_cache(n_p, self.size)
    logits_PxWxV, cache = model.decode(self.prompt_PxW[:, :self.size],
                                       jnp.zeros((n_p,), jnp.int32), cache)
    first_PxV = logits_PxWxV[jnp.arange(n_p), self.length_P - 1]
    cst = self.constraint.init(n_p) if self.constraint is not None else None
    carry = (buf_PxT, jnp.zeros((n_p,), bool), jnp.zeros((n_p,), jnp.int32), cst, cache)
    return self._emit(0, carry, first_PxV)

  def cached(self, model, j, carry):
    """Token j from the token before it, against the cache."""
    _, _, last_P, _, cache = carry
    logits_Px1xV, cache = model.decode(last_P[:, None], self.length_P + j - 1, cache)
    return self._emit(j, (*carry[:4], cache), logits_Px1xV[:, 0])

  def slide(self, model, j, carry):
    """Token j from the plain forward pass over the last `window` tokens."""
    buf_PxT, w = carry[0], self.window
    nxt_P = self.length_P + j  # the position being predicted
    start_P = jnp.maximum(nxt_P - w, 0)
    win_PxS = jax.vmap(lambda b, s0: jax.lax.dynamic_slice(b, (s0,), (w,)))(
        jnp.pad(buf_PxT, ((0, 0), (0, w))), start_P)
    logits_PxSxV, _ = model(win_PxS)
    return self._emit(j, carry, logits_PxSxV[jnp.arange(self.n_p), nxt_P - 1 - start_P])

  def result(self, j, carry):
    """(tokens_PxN, count_P) after j steps; rows cut short by the early exit
    are filled with their last token."""
    buf_PxT, _, last_P, _, _ = carry
    idx_N = jnp.arange(self.n_new)
    new_PxN = jnp.take_along_axis(buf_PxT, self.length_P[:, None] + idx_N[None, :], 1)
    new_PxN = jnp.where(idx_N[None, :] < j, new_PxN, last_P[:, None])
    if self.stop is None:
      return new_PxN, jnp.full((self.n_p,), j, jnp.int32)
    hit_PxN = jnp.isin(new_PxN, self.stop) & (idx_N[None, :] < j)
    return new_PxN, jnp.where(hit_PxN.any(-1), hit_PxN.argmax(-1) + 1, j).astype(jnp.int32)


def _loops(dec, step, carry, all_done):
  """Step 1.. while not every row is done: cached steps, then sliding ones."""
  def run(kind, until, j, carry):
    return jax.lax.while_loop(
        lambda c: (c[0] < until) & ~all_done(c[1]),
        lambda c: (c[0] + 1, step(kind, c[0], c[1])), (j, carry))
  j, carry = run('cached', min(dec.cached_until, dec.n_new), jnp.int32(1), carry)
  if dec.window:
    j, carry = run('slide', dec.n_new, j, carry)
  return j, carry


def sample(model, prompt_PxW, length_P, n_new: int, key, settings,
           stop_ids=(), window: int = 0, constraint=None, on_token=None):
  """New tokens after each prompt, for one model (traceable).

  Args:
    model: an NNX model with init_cache / decode / __call__.
    prompt_PxW: right-padded prompt tokens; length_P: their lengths (>= 1).
    n_new: tokens to generate (static).
    key: PRNG key; settings: Settings.arrays() (traced values; None: greedy).
    stop_ids: tokens that end a row (EOS); a stopped row repeats its stop token.
    window: the model's context for learned positions (0 = unbounded).
    constraint: optional logits-mask hook (see the module docstring).
    on_token: optional host function(tok_P, done_P) called with every chosen
      token, in order, while the loop runs (an ordered io_callback: streaming
      output; not under vmap).
  Returns:
    tokens_PxN (int32) and count_P: the new tokens of each row up to and
    including its stop token.
  """
  dec = _Decoder(prompt_PxW, length_P, n_new, key, settings, stop_ids, window, constraint,
                 on_token)
  step = lambda kind, j, carry: getattr(dec, kind)(model, j, carry)
  j, carry = _loops(dec, step, dec.start(model), lambda c: c[1].all())
  return dec.result(j, carry)


def sample_runs(merge, params, prompt_PxW, length_P, n_new: int, key, settings,
                stop_ids=(), window: int = 0, constraint=None):
  """`sample` for every run of stacked params (leading runs axis; merge(p)
  builds one run's model), the same prompts and key for every run.

  The runs are vmapped inside each step, not around the loop: the loop's
  counter and exit test stay scalars (it stops when every row of every run
  is done), so no step pays vmap's per-run select of the whole carry.
  Returns tokens_RxPxN and count_RxP.
  """
  dec = _Decoder(prompt_PxW, length_P, n_new, key, settings, stop_ids, window, constraint)
  carry = jax.vmap(lambda p: dec.start(merge(p)))(params)
  step = lambda kind, j, carry: jax.vmap(
      lambda p, c: getattr(dec, kind)(merge(p), j, c))(params, carry)
  j, carry = _loops(dec, step, carry, lambda c: c[1].all())
  return jax.vmap(lambda c: dec.result(j, c))(carry)


def beam_search(model, prompt_W, length, n_new: int, beam: int, constraint=None,
                window: int = 0, stop_ids=()):
  """The most likely n_new tokens after ONE prompt, by beam search (traceable).

  Keeps `beam` hypotheses; every step extends each by every allowed token
  (constraint mask, as in `sample`) and keeps the `beam` best. A hypothesis'
  score is the sum of the model's UNconstrained log-probabilities
  log_softmax(logits) of its tokens, so the search maximises the likelihood the
  free model gives the constrained text (the mask only removes candidates, it
  does not renormalise). Decoding is KV-cached: one prefill of the prompt, whose
  cache is copied to every hypothesis, then one `model.decode` step per token
  for all hypotheses at once, the cache rows reordered by parent each step.
  beam=1 is constrained greedy decoding.

  Args:
    model: an NNX model with init_cache / decode.
    prompt_W: the prompt tokens (1-D, may be right-padded); length: its length
      (>= 1; may be traced).
    n_new: tokens to generate (static); beam: hypotheses kept (static, >= 1).
    constraint: optional logits-mask hook (see the module docstring); its state
      is reordered with the hypotheses.
    window: a learned-position model's context. There is no sliding here: a
      search that would pass the window (length + n_new - 1 > window, judged
      with the padded width W when length is traced) raises ConfigError.
    stop_ids: tokens that end a hypothesis; a finished one repeats its stop
      token at no cost (no length normalisation, so short endings are favoured).
  Returns:
    tokens_N (int32) of the best hypothesis and its total log-probability
    (-inf only if the constraint allowed no token at some step).
  """
  prompt_W = jnp.asarray(prompt_W, jnp.int32)
  width, k = prompt_W.shape[0], int(beam)
  if k < 1:
    raise ValueError(f'beam_search: beam={beam}; use >= 1')
  try:
    longest = int(length) + n_new
  except TypeError:  # a traced length: bound it by the padded width
    longest = width + n_new
  if window and longest - 1 > window:  # the last new token is never fed back
    from tinyjax.tasks import ConfigError
    raise ConfigError(f'beam search: the prompt ({longest - n_new} tokens) plus {n_new} new '
                      f'tokens passes the model\'s context of {window} positions; beam '
                      'search does not slide the window (ask for fewer new tokens)')
  size = min(width + n_new, window) if window else width + n_new
  length = jnp.asarray(length, jnp.int32)
  stop = jnp.asarray(stop_ids, jnp.int32) if len(stop_ids) else None
  neg_inf = jnp.float32(-jnp.inf)

  cache = model.init_cache(1, size)
  logits_1xWxV, cache = model.decode(prompt_W[None, :size], jnp.zeros((1,), jnp.int32), cache)
  first_V = logits_1xWxV[0, length - 1]
  v = first_V.shape[-1]
  cache = jax.tree.map(lambda c: jnp.repeat(c, k, axis=0), cache)
  cst = constraint.init(k) if constraint is not None else None

  def choose(j, logits_KxV, carry):
    """Token j of every hypothesis: the `beam` best (parent, token) pairs."""
    buf_KxN, score_K, done_K, last_K, cst, cache = carry
    logp_KxV = jax.nn.log_softmax(logits_KxV.astype(jnp.float32), -1)
    if constraint is not None:
      logp_KxV = jnp.where(constraint.allowed(cst), logp_KxV, neg_inf)
    # A finished hypothesis continues only with its stop token, at no cost.
    logp_KxV = jnp.where(done_K[:, None],
                         jnp.where(jnp.arange(v)[None, :] == last_K[:, None], 0.0, neg_inf),
                         logp_KxV)
    score_K, flat_K = jax.lax.top_k((score_K[:, None] + logp_KxV).reshape(-1), k)
    parent_K, tok_K = flat_K // v, (flat_K % v).astype(jnp.int32)
    take = lambda c: c[parent_K]
    buf_KxN = take(buf_KxN).at[:, j].set(tok_K)
    done_K = take(done_K)
    if stop is not None:
      done_K = done_K | jnp.isin(tok_K, stop)
    if constraint is not None:
      cst = constraint.update(jax.tree.map(take, cst), tok_K)
    return buf_KxN, score_K, done_K, tok_K, cst, jax.tree.map(take, cache)

  # Only hypothesis 0 is live at first: the others would duplicate it.
  score_K = jnp.full((k,), neg_inf).at[0].set(0.0)
  carry = (jnp.zeros((k, n_new), jnp.int32), score_K, jnp.zeros((k,), bool),
           jnp.zeros((k,), jnp.int32), cst, cache)
  carry = choose(0, jnp.broadcast_to(first_V, (k, v)), carry)

  def step(j, carry):
    """Token j from token j-1 (at position length + j - 1), against the cache."""
    last_K, cache = carry[3], carry[5]
    logits_Kx1xV, cache = model.decode(last_K[:, None], jnp.full((k,), length + j - 1),
                                       cache)
    return choose(j, logits_Kx1xV[:, 0], (*carry[:5], cache))

  buf_KxN, score_K, *_ = jax.lax.fori_loop(1, n_new, step, carry)
  best = score_K.argmax()
  return buf_KxN[best], score_K[best]
