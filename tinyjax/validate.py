"""Checks a config before anything is compiled or written.

Every failure is a ConfigError whose message names the field, the value and
what is allowed; tinyjax.run prints it as one line and exits with status 2.
"""

from __future__ import annotations

from tinyjax.tasks import ConfigError


def _require(ok: bool, field: str, value, allowed: str):
  if not ok:
    raise ConfigError(f'{field}: {value!r} is not allowed; {allowed}')


def check(config):
  t, o, e, c = config.train, config.optimizer, config.eval, config.checkpoint
  _require(isinstance(config.seed, int) and config.seed >= 0, 'seed', config.seed,
           'use an integer >= 0')
  _require(t.steps > 0, 'train.steps', t.steps, 'use > 0')
  _require(t.log_every > 0, 'train.log_every', t.log_every, 'use > 0')
  _require(t.chunk_steps > 0 and t.chunk_steps % t.log_every == 0, 'train.chunk_steps',
           t.chunk_steps, f'use a positive multiple of train.log_every={t.log_every}')
  _require(t.batch_size >= 0, 'train.batch_size', t.batch_size, 'use 0 (full batch) or > 0')
  _require(o.lr > 0, 'optimizer.lr', o.lr, 'use > 0')
  for name in ('momentum', 'b1', 'b2'):
    _require(0 <= o[name] < 1, f'optimizer.{name}', o[name], 'use a value in [0, 1)')
  _require(o.weight_decay >= 0, 'optimizer.weight_decay', o.weight_decay, 'use >= 0')
  if 'grokfast_lambda' in o:
    _require('grokfast_alpha' in o, 'optimizer.grokfast_alpha', None,
             'set it too when optimizer.grokfast_lambda is set (paper: 0.98)')
    _require(0 <= o.grokfast_alpha < 1, 'optimizer.grokfast_alpha', o.grokfast_alpha,
             'use a value in [0, 1)')
    _require(o.grokfast_lambda >= 0, 'optimizer.grokfast_lambda', o.grokfast_lambda,
             'use >= 0 (0 = off)')
  _require(e.every >= 0 and e.every % t.log_every == 0, 'eval.every', e.every,
           f'use 0 (= log_every) or a multiple of train.log_every={t.log_every}')
  for field, steps in (('eval.steps', e.get('steps', ())), ('checkpoint.steps', c.get('steps', ()))):
    _require(all(isinstance(s, int) and s >= 0 and s % t.log_every == 0 for s in steps),
             field, tuple(steps), f'use steps >= 0 that are multiples of train.log_every={t.log_every}')
  _require(e.get('temperature', 0.0) >= 0, 'eval.temperature', e.get('temperature'),
           'use 0 (greedy) or > 0')
  _require(e.get('top_k', 0) >= 0, 'eval.top_k', e.get('top_k'), 'use 0 (off) or k > 0')
  _require(0 < e.get('top_p', 1.0) <= 1, 'eval.top_p', e.get('top_p'), 'use a value in (0, 1]')
  _require(e.max_new_tokens > 0, 'eval.max_new_tokens', e.max_new_tokens, 'use > 0')
  _require(c.every >= 0, 'checkpoint.every', c.every, 'use 0 (final only) or > 0')
  _require(c.every == 0 or c.every % t.log_every == 0, 'checkpoint.every', c.every,
           f'use a multiple of train.log_every={t.log_every}')
  for name, spec in config.milestones.items():
    _require(isinstance(spec, (tuple, list)) and len(spec) == 3 and spec[1] in
             ('<', '<=', '>', '>='), f'milestones.{name}', spec,
             "use (metric, op, threshold) with op one of '<', '<=', '>', '>='")
  if 'lenses' in config:
    from tinyjax import lenses
    for name in config.lenses:
      _require(name in lenses.DEFAULTS, f'lenses.{name}', config.lenses[name],
               f'no such lens setting; the settings are {sorted(lenses.DEFAULTS)}')
    ls = lenses.settings(config)
    for name in ('probe_len', 'probe_rows', 'llc_chains', 'llc_draws'):
      _require(ls[name] >= 1, f'lenses.{name}', ls[name], 'use >= 1')
    for name in ('sharpness_iters', 'llc_burnin', 'attention_images', 'llc_gamma', 'llc_nbeta',
                 'hessian_lanczos', 'hessian_top_k', 'hessian_vectors', 'hessian_trace_samples',
                 'sharpness_precond'):
      _require(ls[name] >= 0, f'lenses.{name}', ls[name], 'use >= 0 (0 = off / default)')
    _require(ls.llc_epsilon > 0, 'lenses.llc_epsilon', ls.llc_epsilon, 'use > 0')
    _require(ls.every >= 0, 'lenses.every', ls.every, 'use 0 (every logged step) or N > 0 '
             '(the first logged step of every N steps)')
  if 'output' in config:
    from tinyjax import writer
    for name in config.output:
      _require(name in writer.OUTPUT_DEFAULTS, f'output.{name}', config.output[name],
               f'no such output setting; the settings are {sorted(writer.OUTPUT_DEFAULTS)}')
    out = writer.output_settings(config)
    for name in ('per_run_files', 'sample_seeds'):
      _require(isinstance(out[name], int) and out[name] >= 0, f'output.{name}', out[name],
               'use an integer >= 0')
  s = config.sweep
  _require(s.seeds >= 0, 'sweep.seeds', s.seeds, 'use 0 (off) or N > 0 (seeds 0..N-1)')
  for lr in s.lrs:
    _require(lr > 0, 'sweep.lrs', tuple(s.lrs), 'every learning rate must be > 0')
