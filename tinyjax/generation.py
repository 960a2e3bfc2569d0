"""Generation for a Program: prompts to tokens, tokens to text.

`Generation` is the part of tinyjax.program.Program that owns the prompts:
their encoding, the exact match of the tracked ones at every eval (one
teacher-forced forward pass where it fits, else greedy decoding), and decoding
every run's continuation (`generations`); the decoding itself is
tinyjax.sampler's.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import sampler as sampler_lib
from tinyjax.tasks import ConfigError


class Generation:
  """Program's prompts and decoding (a base class of tinyjax.program.Program,
  which supplies config, task, graphdef, max_len)."""

  def _init_generation(self, config, task, abstract):
    """The decoding settings and the encoded prompts (ConfigError for a tracked
    prompt that neither fits one forward pass nor can be decoded)."""
    # Generation needs the model's KV-cached decoding (tinyjax.sampler).
    self.can_decode = hasattr(abstract, 'init_cache') and hasattr(abstract, 'decode')
    # Learned positions bound what the model can read: either generation stops
    # at the context (default) or the window slides (eval.slide_window; tiny-llm).
    learned = config.model.get('positions') == 'learned'
    self.context = (config.model.get('max_len') or self.max_len) if learned else 0
    self.window = self.context if config.eval.get('slide_window', False) else 0
    self.stop_ids = (task.vocab.eos_id,) if task.vocab.eos_id >= 0 else ()
    self.settings = sampler_lib.Settings(config.eval.get('temperature', 0.0),
                                         config.eval.get('top_k', 0),
                                         config.eval.get('top_p', 1.0))
    self._prompts = self._encode_prompts()
    if self._prompts['track'] and self._prompts['teacher'] is None and not self.can_decode:
      raise ConfigError(f'model.name {config.model.name!r}: model contract: the tracked prompts '
                        'do not fit one forward pass and the model has no init_cache/decode to '
                        'generate them; set eval.track_generations = False')
    # Compiled per (n_new, constraint, beam); the settings are traced.
    self.generate = jax.jit(self._generate, static_argnums=(2, 5, 6))

  def _tracked_exact(self, model, params, key):
    """One run's exact match of the tracked prompts: generation/<prompt>,
    generation/accuracy and exact/<bucket> (the fraction right per bucket of
    task.prompt_buckets)."""
    m = {}
    if self._prompts['teacher'] is not None:
      t = self._prompts['teacher']
      logits, _ = model(jnp.asarray(t['x']))
      right = ((logits.argmax(-1) == t['y']) | (t['w'] == 0)).all(-1)
    else:  # its own key (greedy today, but never the eval windows' keys)
      toks = self._generate_run(params, self._prompts, self._prompts['n_track'],
                                sampler_lib.GREEDY.arrays(), jax.random.fold_in(key, 1000))
      exp, emask = self._prompts['expected'], self._prompts['expected_mask']
      right = ((toks == exp) | (emask == 0)).all(-1)
    n = len(self._tracked)
    for i, p in enumerate(self._tracked):
      m[f'generation/{p}'] = right[i].astype(jnp.float32)
    if n:
      m['generation/accuracy'] = right[:n].mean()
    for name, rows in self._buckets.items():
      m[f'exact/{name}'] = right[rows].mean()
    return m

  def encode_prompts(self, prompts):
    """Right-padded prompt tokens and lengths (raises ConfigError on OOV text)."""
    ids = [self.task.vocab.encode(self.task.prompt_template.replace('{prompt}', p))
           for p in prompts]
    if self.context and max(map(len, ids)) > self.context:
      raise ConfigError(f'prompt {max(prompts, key=len)[:40]!r}: {max(map(len, ids))} tokens, '
                        f'longer than the model\'s context of {self.context}')
    toks = np.zeros((len(ids), max(map(len, ids))), np.int32)
    for i, p in enumerate(ids):
      toks[i, :len(p)] = p
    return {'tokens': toks, 'lengths': np.asarray(list(map(len, ids)), np.int32)}

  def _encode_prompts(self):
    """The prompts with a known expected completion, then every bucket's
    prompts, as one batch to decode."""
    vocab, task = self.task.vocab, self.task
    self._tracked = tuple(p for p in task.prompts if p in task.expected)
    tracked = list(self._tracked)
    self._buckets = {}  # bucket name -> its slice of the tracked prompts
    for name, prompts in task.prompt_buckets.items():
      self._buckets[name] = slice(len(tracked), len(tracked) + len(prompts))
      tracked += prompts
    if not tracked:
      return {'track': False}
    out = {**self.encode_prompts(tracked),
           'track': bool(self.config.eval.track_generations and task.expected)}
    if out['track']:
      exp = [vocab.encode(task.expected[p]) + ([vocab.eos_id] if vocab.eos else [])
             for p in tracked]
      n = max(map(len, exp))
      out['n_track'] = n
      out['expected'] = np.zeros((len(exp), n), np.int32)
      out['expected_mask'] = np.zeros((len(exp), n), np.int32)
      for i, e in enumerate(exp):
        out['expected'][i, :len(e)] = e
        out['expected_mask'][i, :len(e)] = 1
      out['teacher'] = self._teacher_forced(out['tokens'], out['lengths'], exp)
    return out

  def _teacher_forced(self, tokens, lengths, expected):
    """Greedy decoding yields the expected text iff at every expected position
    the argmax given the expected prefix is the expected token; so exact match
    is one forward pass over prompt + expected (inputs x, targets y, the scored
    positions w) instead of len(expected) decoding steps. None where the
    sequence would not fit the model's context (then the eval decodes)."""
    seqs = [list(t[:n]) + list(e) for t, n, e in zip(tokens, lengths, expected)]
    width = max(map(len, seqs)) - 1
    if self.window or width > (self.context or self.max_len):
      return None
    x, y, w = (np.zeros((len(seqs), width), np.int32) for _ in range(3))
    for i, (seq, n, e) in enumerate(zip(seqs, lengths, expected)):
      x[i, :len(seq) - 1], y[i, :len(seq) - 1] = seq[:-1], seq[1:]
      w[i, n - 1:n - 1 + len(e)] = 1
    return {'x': x, 'y': y, 'w': w}

  def _generate_run(self, params, prompts, n_new, settings, key):
    """The continuation of every prompt (tinyjax.sampler); after a stop token
    only that token. [P, n_new]."""
    model = nnx.merge(self.graphdef, params)
    toks, _ = sampler_lib.sample(model, jnp.asarray(prompts['tokens']), prompts['lengths'],
                                 n_new, key, settings, self.stop_ids, self.window)
    return toks

  def generations(self, params, n_new: int, prompts=None, settings=None,
                  seed: int = 0, constraint=None, beam: int = 0,
                  select=None) -> list[dict[str, str]]:
    """Host helper: {prompt: completion text} for every run in params, with
    eval's sampler settings unless `settings` (a sampler.Settings) is given;
    optionally under a constraint (a logits-mask hook, e.g. pilish.Pilish) and
    by beam search (beam > 0) instead of sampling. `select` takes the
    tokens [R, P, n] to the host (default: all runs; tinyjax.loop: the runs
    this process owns)."""
    return self.start_generations(params, n_new, prompts, settings, seed, constraint, beam,
                                  select)()

  def start_generations(self, params, n_new: int, prompts=None, settings=None, seed: int = 0,
                        constraint=None, beam: int = 0, select=None):
    """generations(...), dispatched: the decoding is queued on the devices and
    a function is returned that waits for it and returns the texts (the host
    works meanwhile: tinyjax.loop closes the writers while the runs decode)."""
    prompts = tuple(self.task.prompts if prompts is None else prompts)
    if prompts and not self.can_decode:
      raise ConfigError(f'model.name {self.config.model.name!r}: model contract: it has no '
                        'init_cache/decode, so it cannot generate')
    if not prompts:
      n_runs = jax.tree.leaves(params)[0].shape[0]
      return lambda: [{} for _ in range(n_runs)]
    toks = self.generate(*self._generate_args(params, n_new, prompts, settings, seed,
                                              constraint, beam))

    def texts():
      toks_host = np.asarray(toks) if select is None else select(toks)
      return [{p: self.task.vocab.decode(toks_host[r, i]) for i, p in enumerate(prompts)}
              for r in range(toks_host.shape[0])]
    return texts

  def _generate_args(self, params, n_new, prompts, settings=None, seed=0, constraint=None,
                     beam=0):
    """generate's arguments for generations(...) (also what warm_up_final compiles)."""
    enc = self.encode_prompts(prompts)
    n_new = self.max_new_tokens(n_new, int(enc['lengths'].max()))
    settings = (settings or self.settings).arrays()
    return params, enc, n_new, settings, jax.random.key(seed), constraint, beam

  def _generate(self, params, prompts, n_new, settings, key, constraint=None, beam=0):
    """Every run's continuation of every prompt: sampling (optionally under a
    constraint), or beam search per run and prompt (beam > 0). [R, P, n_new]."""
    merge = lambda p: nnx.merge(self.graphdef, p)
    tokens, lengths = jnp.asarray(prompts['tokens']), jnp.asarray(prompts['lengths'])
    if not beam:
      return sampler_lib.sample_runs(merge, params, tokens, lengths, n_new, key, settings,
                                     self.stop_ids, self.window, constraint)[0]

    def run(p):
      model = merge(p)
      return jax.vmap(lambda t, n: sampler_lib.beam_search(
          model, t, n, n_new, beam, constraint, self.context, self.stop_ids)[0])(tokens, lengths)
    return jax.vmap(run)(params)

  def max_new_tokens(self, requested: int, prompt_len: int) -> int:
    """Generation cap, within the positions a learned-position model knows
    (the last new token is predicted at position limit - 1, never fed back)."""
    if self.context and not self.window:
      return max(1, min(requested, self.context - prompt_len + 1))
    return requested
