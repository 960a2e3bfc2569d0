"""peek's export of a trained model, and a trajectory a page can play back.

`export(workdir, out)` writes, for one run of a workdir, the JSON files of
tiny-llm's export_for_web.py with the same keys, shapes, prompts and rounding
(../shared/specs/tiny-llm-peek.md section 7), so peek's own pages can load
them:

  vocab.json meta.json tok_emb.json pos_emb.json lm_head.json attention.json
  predictions.json hidden_state.json training.json data_sample.json blocks.json

and, beyond peek (which shows one finished model), `trajectory.js` with the
model's insides at every checkpoint along the run (attention maps of the probe
text, top next-token predictions at each of its positions, a 2-D PCA of the
token embeddings, the losses) next to `index.html`, a static page (no build
step, no network) with a slider over training steps. Open it from disk.

Weights, attention and logits are rounded to 4 decimals, probabilities to 6,
losses to 3, as peek's files. Linear weights are [out, in] as in PyTorch.
Models laid out unlike tiny-llm export what applies; meta.json's
`not_exported` says what does not (e.g. pos_emb for sinusoidal positions).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from tinyjax.tasks import ConfigError

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'index.html')
FILES = ('vocab.json', 'meta.json', 'tok_emb.json', 'pos_emb.json', 'lm_head.json',
         'attention.json', 'predictions.json', 'hidden_state.json', 'training.json',
         'data_sample.json', 'blocks.json')


def _r(x, dp=4):
  return np.round(np.asarray(x, np.float64), dp).tolist()


def _np(tree):
  """A pure dict of one run's parameters (leading runs axis of 1 dropped)."""
  from flax import nnx
  pure = nnx.to_pure_dict(tree) if not isinstance(tree, dict) else tree
  import jax
  return jax.tree.map(lambda a: np.asarray(a)[0], pure)


def torch_params(p, cfg) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
  """[(PyTorch name, array [out, in] for Linear weights)] in tiny-llm's
  named_parameters order, and what tiny-llm has that this model does not."""
  out, missing = [], []
  out.append(('tok_emb.weight', p['embed']['embedding']))
  if 'pos_embed' in p:
    out.append(('pos_emb.weight', p['pos_embed']))
  else:
    missing.append(f'pos_emb ({cfg.positions} positions)')
  h = cfg.n_heads
  k = cfg.d_model // h

  def norm(prefix, node):
    if 'ln' in node:
      out.append((f'{prefix}.weight', node['ln']['scale']))
      if 'bias' in node['ln']:
        out.append((f'{prefix}.bias', node['ln']['bias']))

  for i in sorted(p['blocks']):
    blk, pre = p['blocks'][i], f'blocks.{i}'
    for j in range(h):
      for torch_name, ours in (('key', 'k'), ('query', 'q'), ('value', 'v')):
        lin = blk['attn'][ours]
        out.append((f'{pre}.attn.heads.{j}.{torch_name}.weight',
                    lin['kernel'][:, j * k:(j + 1) * k].T))
        if 'bias' in lin:
          out.append((f'{pre}.attn.heads.{j}.{torch_name}.bias', lin['bias'][j * k:(j + 1) * k]))
    out.append((f'{pre}.attn.proj.weight', blk['attn']['o']['kernel'].T))
    if 'bias' in blk['attn']['o']:
      out.append((f'{pre}.attn.proj.bias', blk['attn']['o']['bias']))
    if 'mlp' in blk:
      for torch_name, ours in (('ffwd.0', 'up'), ('ffwd.2', 'down')):
        out.append((f'{pre}.{torch_name}.weight', blk['mlp'][ours]['kernel'].T))
        if 'bias' in blk['mlp'][ours]:
          out.append((f'{pre}.{torch_name}.bias', blk['mlp'][ours]['bias']))
    norm(f'{pre}.ln1', blk.get('norm1', {}))
    norm(f'{pre}.ln2', blk.get('norm2', {}))
  norm('ln_f', p.get('final_norm', {}))
  if 'unembed' in p:
    out.append(('lm_head.weight', p['unembed']['kernel'].T))
    if 'bias' in p['unembed']:
      out.append(('lm_head.bias', p['unembed']['bias']))
  else:
    missing.append('lm_head (tied to tok_emb: lm_head.json holds tok_emb and zero bias)')
  if 'ln' not in p['blocks'][sorted(p['blocks'])[0]].get('norm1', {}):
    missing.append(f'ln1/ln2/ln_f parameters ({cfg.norm} norm has none)')
  return [(n, np.asarray(a)) for n, a in out], missing


def _blocks_json(p, cfg):
  h, k = cfg.n_heads, cfg.d_model // cfg.n_heads

  def ln(node):
    if 'ln' not in node:
      return None
    return {'gain': _r(node['ln']['scale']),
            'bias': _r(node['ln'].get('bias', np.zeros_like(node['ln']['scale'])))}

  blocks = []
  for i in sorted(p['blocks']):
    blk = p['blocks'][i]
    a = blk['attn']
    heads = [{n: _r(a[n]['kernel'][:, j * k:(j + 1) * k].T) for n in 'qkv'} for j in range(h)]
    entry = {'ln1': ln(blk.get('norm1', {})), 'heads': heads,
             'proj': {'weight': _r(a['o']['kernel'].T),
                      'bias': _r(a['o'].get('bias', np.zeros(cfg.d_model)))},
             'ln2': ln(blk.get('norm2', {}))}
    if 'mlp' in blk:
      m = blk['mlp']
      entry['mlp'] = {'fc1': _r(m['up']['kernel'].T), 'b1': _r(m['up'].get('bias', np.zeros(cfg.d_mlp))),
                      'fc2': _r(m['down']['kernel'].T),
                      'b2': _r(m['down'].get('bias', np.zeros(cfg.d_model)))}
    blocks.append(entry)
  return {'final_ln': ln(p.get('final_norm', {})), 'blocks': blocks}


class _Inspector:
  """Jitted forward passes of one run with attention weights and hidden state."""

  def __init__(self, prog):
    import jax
    from flax import nnx
    self.prog = prog
    self.attention = prog.attention_model

    def fwd(params, toks):
      model = nnx.merge(prog.graphdef, params)
      if self.attention:
        return model(toks, inspect=True)
      return model(toks)
    self._fwd = jax.jit(fwd)

  def __call__(self, params_1, ids):
    """(logits_TxV, aux) of one sequence; params with a runs axis of 1."""
    import jax
    one = jax.tree.map(lambda a: a[0], params_1)
    logits, aux = self._fwd(one, np.asarray([ids], np.int32))
    return np.asarray(logits[0], np.float64), {k: np.asarray(v) for k, v in aux.items()}


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _dump(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f, separators=(',', ':'), ensure_ascii=False)


def _metric_rows(workdir, run_dir):
  from tinyjax import writer
  return writer.read_jsonl(os.path.join(workdir, run_dir, 'metrics.jsonl'))


def _trained_on(workdir) -> str:
  """The platform the run trained on (summary.json's devices), e.g. 'cpu'."""
  try:
    with open(os.path.join(workdir, 'summary.json')) as f:
      device = json.load(f)['devices'][0].lower()
  except (OSError, KeyError, IndexError, ValueError):
    return 'unknown'
  return next((p for k, p in (('cuda', 'gpu'), ('gpu', 'gpu'), ('tpu', 'tpu'), ('cpu', 'cpu'))
               if k in device), device)


def _pca2(e_VxD, ref=None):
  """2-D PCA of the embedding rows; signs chosen to agree with `ref` (the
  previous checkpoint's projection) so that the cloud does not flip."""
  x = e_VxD - e_VxD.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  y = x @ vt[:2].T
  for c in range(min(2, y.shape[1])):
    flip = (ref is not None and (y[:, c] * ref[:, c]).sum() < 0) or (
        ref is None and y[np.abs(y[:, c]).argmax(), c] < 0)
    if flip:
      y[:, c] = -y[:, c]
  return y


def export(workdir: str, out: str, run: str | None = None, step: int | None = None,
           probe: str = 'ROMEO: To be', predict: str = 'ROMEO',
           sample_prompt: str | None = None, trajectory: bool = True, seed: int = 0,
           max_checkpoints: int = 24) -> dict:
  """Writes the export of one run into `out`; returns {'files', 'steps', 'step'}."""
  from tinyjax import restore as gen
  from tinyjax import sampler
  prog, group, index = gen.open_run(workdir, run)
  cfg, task, vocab = group.config, prog.task, prog.task.vocab
  if not prog.can_decode:  # the export samples text (before anything is written)
    raise ConfigError(f'model.name {cfg.model.name!r}: model contract: it has no '
                      'init_cache/decode, so peek cannot sample its text')
  run_name = group.runs[index]['name']
  sample_prompt = sample_prompt or (task.prompts[0] if task.prompts else predict)
  ids = {}
  for flag, text in (('--probe', probe), ('--predict', predict), ('--sample_prompt', sample_prompt)):
    try:
      ids[flag] = prog.encode_prompts([text])['tokens'][0].tolist()
    except ConfigError as e:
      raise ConfigError(f'{flag}: {e}') from None
  steps = gen.checkpoint_steps(workdir, group)
  if not steps:
    raise ConfigError(f'--workdir {workdir}: no checkpoint to export')
  found, params = gen.load_params(workdir, prog, group, index, step)
  p = _np(params)
  if 'embedding' not in p.get('embed', {}):  # peek's pages start from the token embeddings
    raise ConfigError(f'model.name {cfg.model.name!r}: peek exports a token embedding table '
                      "(an nnx.Embed named 'embed'); this model has none")
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--out {out}: cannot be created as a directory ({e.strerror or e})') from None
  inspect = _Inspector(prog)
  is_tf = inspect.attention
  names, missing = torch_params(p, cfg.model) if is_tf else ([], ['everything but vocab, '
                                                                  'tok_emb, predictions, training, '
                                                                  f'data_sample ({cfg.model.name})'])
  toks = [vocab.decode([i], stop_at_eos=False) for i in range(len(vocab))]
  _dump(os.path.join(out, 'vocab.json'), toks)
  m = cfg.model
  meta = {'n_params': int(prog.num_params), 'vocab_size': len(vocab),
          'n_embd': m.get('d_model', m.get('embed_dim')), 'n_layer': m.get('n_layers', 0),
          'n_head': m.get('n_heads', 0), 'block_size': int(prog.context or task.max_len),
          'device_trained': _trained_on(workdir),
          'params': [{'name': n, 'shape': list(a.shape), 'n': int(a.size)} for n, a in names],
          'step': int(found), 'run': run_name, 'not_exported': missing}
  _dump(os.path.join(out, 'meta.json'), meta)
  _dump(os.path.join(out, 'tok_emb.json'), _r(p['embed']['embedding']))
  if 'pos_embed' in p:
    _dump(os.path.join(out, 'pos_emb.json'), _r(p['pos_embed']))
  if is_tf:
    head = (p['unembed']['kernel'].T, p['unembed'].get('bias', np.zeros(len(vocab)))) \
        if 'unembed' in p else (p['embed']['embedding'], np.zeros(len(vocab)))
    _dump(os.path.join(out, 'lm_head.json'), {'weight': _r(head[0]), 'bias': _r(head[1])})
    _, aux = inspect(params, ids['--probe'])
    _dump(os.path.join(out, 'attention.json'), {
        'prompt': probe, 'tokens': [toks[i] for i in ids['--probe']],
        'layers': _r(aux['attn_LxBxHxTxT'][:, 0])})
    _dump(os.path.join(out, 'blocks.json'), _blocks_json(p, cfg.model))
  logits, aux = inspect(params, ids['--predict'])
  last = logits[-1]
  probs = _softmax(last)
  order = np.argsort(-probs, kind='stable')[:12]
  _dump(os.path.join(out, 'predictions.json'), {
      'prompt': predict, 'logits': _r(last), 'probs': _r(probs, 6),
      'top': [{'char': toks[i], 'id': int(i), 'logit': round(float(last[i]), 4),
               'prob': round(float(probs[i]), 6)} for i in order]})
  if 'hidden_BxTxD' in aux:
    _dump(os.path.join(out, 'hidden_state.json'), {'prompt': predict,
                                                   'state': _r(aux['hidden_BxTxD'][0, -1])})

  # training.json: the eval rows, each with a sample from its checkpoint.
  rows = _metric_rows(workdir, group.runs[index]['name'])
  evals = [r for r in rows if r.get('val/loss') is not None or r.get('train/loss') is not None]
  hot = sampler.Settings(temperature=1.0)
  n_new = cfg.eval.max_new_tokens
  params_at = {}

  def at(s):
    if s not in params_at:
      params_at[s] = gen.load_params(workdir, prog, group, index, s)[1]
    return params_at[s]

  def sample(s):
    if s not in steps:
      return None
    return sample_prompt + prog.generations(at(s), n_new, [sample_prompt], hot, seed)[0][sample_prompt]

  rnd = lambda v: None if v is None else round(v, 3)
  _dump(os.path.join(out, 'training.json'), {
      'seed_prompt': sample_prompt,
      'checkpoints': [{'step': r['step'], 'train_loss': rnd(r.get('train/loss')),
                       'val_loss': rnd(r.get('val/loss')), 'sample': sample(r['step'])}
                      for r in evals]})
  _dump(os.path.join(out, 'data_sample.json'), _data_sample(cfg, vocab))
  written = [f for f in FILES if os.path.exists(os.path.join(out, f))]

  if trajectory:
    pick = steps if len(steps) <= max_checkpoints else sorted(set(
        steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, max_checkpoints)))
    by_step = {r['step']: r for r in rows}
    traj = {'title': f'{os.path.basename(os.path.abspath(workdir))}  {run_name}',
            'vocab': toks, 'n_layer': meta['n_layer'], 'n_head': meta['n_head'],
            'probe': {'text': probe, 'tokens': [toks[i] for i in ids['--probe']]},
            'loss': {'step': [r['step'] for r in rows], 'loss': [r.get('loss') for r in rows],
                     'eval_step': [r['step'] for r in evals],
                     'train': [r.get('train/loss') for r in evals],
                     'val': [r.get('val/loss') for r in evals]},
            'checkpoints': []}
    ref = None
    for s in pick:
      prm = at(s)
      logits, aux = inspect(prm, ids['--probe'])
      pr = _softmax(logits)
      top = np.argsort(-pr, axis=-1, kind='stable')[:, :5]
      ref = _pca2(np.asarray(_np(prm)['embed']['embedding'], np.float64), ref)
      row = by_step.get(s, {})
      traj['checkpoints'].append({
          'step': int(s),
          'attention': _r(aux['attn_LxBxHxTxT'][:, 0], 3) if is_tf else [],
          'predictions': [[{'token': toks[i], 'prob': round(float(pr[t, i]), 4)}
                           for i in top[t]] for t in range(len(top))],
          'embedding': _r(ref, 3),
          'train_loss': row.get('train/loss'), 'val_loss': row.get('val/loss')})
      params_at.pop(s, None)
    with open(os.path.join(out, 'trajectory.js'), 'w') as f:
      f.write('window.TINYJAX_TRAJECTORY = ')
      json.dump(traj, f, separators=(',', ':'), ensure_ascii=False)
      f.write(';\n')
    shutil.copyfile(PAGE, os.path.join(out, 'index.html'))
    written += ['trajectory.js', 'index.html']
  problems = validate(out)
  if problems:
    raise AssertionError('export does not match the schema: ' + '; '.join(problems))
  return {'files': written, 'step': int(found), 'steps': steps}


def _data_sample(cfg, vocab) -> dict:
  """The corpus's first 1,500 characters and a 32-token example (text tasks);
  the first training lines for the synthetic ones."""
  if cfg.task.name == 'corpus':
    from tinyjax.tasks import files
    text = files.read_text(cfg.task.path)
  else:
    from tinyjax import tasks
    text = '\n'.join(tasks.build(cfg.task).train_lines)
  ids = vocab.encode(text[:4096]) if cfg.task.name == 'corpus' else []
  example = {}
  if len(ids) > 33:
    example = {'input': vocab.decode(ids[:32], False), 'target': vocab.decode(ids[1:33], False),
               'input_ids': ids[:32], 'target_ids': ids[1:33]}
  return {'snippet': text[:1500], 'total_chars': len(text), 'example': example}


def _shape(x):
  """Shape of a nested list (of the first element at each depth)."""
  out = []
  while isinstance(x, list):
    out.append(len(x))
    x = x[0] if x else None
  return out


def validate(out: str) -> list[str]:
  """Problems with an export against peek's schema (empty list: valid)."""
  problems = []
  load = lambda f: json.load(open(os.path.join(out, f)))
  for f in ('vocab.json', 'meta.json', 'tok_emb.json', 'predictions.json', 'training.json',
            'data_sample.json'):
    if not os.path.exists(os.path.join(out, f)):
      problems.append(f'{f} missing')
  if problems:
    return problems
  vocab, meta = load('vocab.json'), load('meta.json')
  v, d = len(vocab), meta['n_embd']
  need = {'meta.json': {'n_params', 'vocab_size', 'n_embd', 'n_layer', 'n_head', 'block_size',
                        'device_trained', 'params'},
          'predictions.json': {'prompt', 'logits', 'probs', 'top'},
          'training.json': {'seed_prompt', 'checkpoints'},
          'data_sample.json': {'snippet', 'total_chars', 'example'}}
  for f, keys in need.items():
    if missing := keys - set(load(f)):
      problems.append(f'{f} lacks {sorted(missing)}')
  if meta['vocab_size'] != v:
    problems.append('meta.vocab_size != len(vocab)')
  if meta['params'] and sum(q['n'] for q in meta['params']) != meta['n_params']:
    problems.append('meta.params do not add up to n_params')
  if _shape(load('tok_emb.json')) != [v, d]:
    problems.append(f'tok_emb.json is not [{v}][{d}]')
  pred = load('predictions.json')
  if len(pred['logits']) != v or len(pred['probs']) != v or len(pred['top']) != min(12, v):
    problems.append('predictions.json: logits/probs not [V] or top not 12')
  if abs(sum(pred['probs']) - 1) > 1e-4:
    problems.append('predictions.json: probs do not sum to 1')
  if os.path.exists(os.path.join(out, 'pos_emb.json')) and \
      _shape(load('pos_emb.json')) != [meta['block_size'], d]:
    problems.append('pos_emb.json is not [block_size][n_embd]')
  if os.path.exists(os.path.join(out, 'lm_head.json')):
    head = load('lm_head.json')
    if _shape(head['weight']) != [v, d] or len(head['bias']) != v:
      problems.append('lm_head.json is not {weight [V][D], bias [V]}')
  if os.path.exists(os.path.join(out, 'attention.json')):
    att = load('attention.json')
    t = len(att['tokens'])
    if _shape(att['layers']) != [meta['n_layer'], meta['n_head'], t, t]:
      problems.append('attention.json layers is not [L][H][T][T]')
    w = np.asarray(att['layers'])
    if np.abs(w.sum(-1) - 1).max() > 1e-3 or np.triu(w, 1).any():
      problems.append('attention rows do not sum to 1 or look ahead')
  if os.path.exists(os.path.join(out, 'hidden_state.json')) and \
      len(load('hidden_state.json')['state']) != d:
    problems.append('hidden_state.json state is not [n_embd]')
  if os.path.exists(os.path.join(out, 'blocks.json')):
    b = load('blocks.json')
    if len(b['blocks']) != meta['n_layer'] or len(b['blocks'][0]['heads']) != meta['n_head']:
      problems.append('blocks.json is not [n_layer] blocks of [n_head] heads')
  return problems
