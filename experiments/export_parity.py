r"""Measured parity of the Hugging Face and TransformerLens exports
(docs/export.md): writes experiments/results/export_parity.json.

  python experiments/export_parity.py [--out experiments/results/export_parity.json]

Trains the shrunk models of tests/test_export.py into a temporary directory
(tiny-llm :smoke 10 steps, GuppyLM :smoke 20 steps, Timmy 200 steps with
checkpoints at 0/50/100/150/200, the induction model :smoke at 2 x 16 tokens
for 20 steps), exports each with `tinyjax.export.export` in both formats
(or records the refusal), and records for each export: the max |logit
difference| to JAX over every position of the config's prompts and 4 random
rows, and whether each prompt's 20-token greedy continuation is identical;
for tiny-llm's TransformerLens export the max |difference| between
run_with_cache's attention patterns and the weights tinyjax's lenses read;
for a 5-checkpoint Timmy trajectory in TransformerLens the max |difference|
between the per-class losses on the full batch and the logged ones.
Needs requirements-interop.txt. About 5 minutes on a 2-core CPU.
"""

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
warnings.filterwarnings('ignore', message='HookedTransformer is deprecated')


def configs():
  """(name, config) of the four shrunk models, as tests/test_export.py."""
  from configs import guppylm, induction, timmy, tiny_llm
  from tests.conftest import lenses_off
  t = lenses_off(tiny_llm.get_config('smoke'))
  with t.unlocked():
    t.train.steps = 10
    t.eval.steps, t.checkpoint.steps = (0, 10), (0, 10)
    t.task.prompts = t.eval.prompts = ('ROMEO:', 'First Citizen:', 'KING', 'a')
  g = guppylm.get_config('smoke')
  tm = lenses_off(timmy.get_config())
  with tm.unlocked():
    tm.train.update(steps=200, chunk_steps=50)
    tm.checkpoint.update(every=0, log_spaced=False, steps=(0, 50, 100, 150))
    tm.eval.track_generations = False
    tm.report.loss_at = (100,)
  i = lenses_off(induction.get_config('smoke'))
  with i.unlocked():
    i.task.update(length=16, min_length=4)
    i.train.steps = 20
    i.checkpoint.every = 20
    i.report.loss_at = (20,)
  return [('tiny_llm', t), ('guppylm', g), ('timmy', tm), ('induction', i)]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results',
                                                'export_parity.json'))
  args = ap.parse_args()
  import jax
  import numpy as np
  import torch
  import transformers

  from tinyjax import export, restore, results, train
  from tinyjax.tasks import ConfigError
  tmp = tempfile.mkdtemp()
  report = {'command': 'python experiments/export_parity.py',
            'versions': {'torch': torch.__version__, 'transformers': transformers.__version__,
                         'transformer_lens': importlib.metadata.version('transformer-lens'),
                         'jax': jax.__version__},
            'tolerance': {'logits': export.TOL, 'attention': 1e-5, 'per_class_loss': 1e-4},
            'models': {}}
  workdirs = {}
  for name, cfg in configs():
    w = workdirs[name] = os.path.join(tmp, name)
    train.train_and_evaluate(cfg, w, progress=False)
    prog, group, _ = restore.open_run(w)
    entry = report['models'][name] = {'parameters': int(prog.num_params),
                                      'steps': int(cfg.train.steps)}
    for fmt in export.FORMATS:
      try:
        index = export.export(fmt, w, os.path.join(tmp, f'{name}_{fmt}'))
        entry[fmt] = index['exports'][0]['check']
      except ConfigError as e:
        entry[fmt] = {'refused': str(e)}
      print(name, fmt, entry[fmt], flush=True)

  # Attention: TransformerLens's hook_pattern vs the weights tinyjax's lenses read.
  w = workdirs['tiny_llm']
  out = os.path.join(tmp, 'tiny_llm_transformer_lens')
  prog, group, index = restore.open_run(w)
  _, params = restore.load_params(w, prog, group, index)
  model = restore.run_model(prog, params)
  tokens = np.asarray([prog.task.vocab.encode('ROMEO: To be, or not'),
                       prog.task.vocab.encode('KING HENRY: Good morrow')[:20]], np.int32)
  want = np.asarray(model(tokens, inspect=True)[1]['attn_LxBxHxTxT'])
  lib = export.load_transformer_lens(out)
  with torch.no_grad():
    _, cache = lib.run_with_cache(torch.as_tensor(tokens, dtype=torch.long))
  got = np.stack([cache[f'blocks.{l}.attn.hook_pattern'].numpy() for l in range(want.shape[0])])
  report['attention_tiny_llm_transformer_lens'] = {
      'prompts': ['ROMEO: To be, or not', 'KING HENRY: Good morrow'[:20]],
      'max_abs_diff': float(np.abs(got - want).max())}

  # Trajectory: Timmy's per-class loss at each checkpoint, in TransformerLens.
  w = workdirs['timmy']
  out = os.path.join(tmp, 'timmy_traj')
  index = export.export('transformer_lens', w, out, every_checkpoint=True, check_exports=False)
  prog, _, _ = restore.open_run(w)
  sp = prog.task.train
  logged = {r['step']: r for r in results.run_rows(w)['seed=0']}
  y = torch.as_tensor(sp.y_NxT, dtype=torch.long)
  rows = []
  for row in index['exports']:
    lib = export.load_transformer_lens(os.path.join(out, row['path']))
    logits = torch.as_tensor(export.torch_logits('transformer_lens', lib, sp.x_NxT))
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction='none').numpy()
    r = {'step': row['step']}
    for c, cname in enumerate(prog.task.class_names):
      m = sp.mask_NxT * (sp.cls_NxT == c)
      r[f'loss/{cname}'] = float((ce * m).sum() / m.sum())
      r[f'logged loss/{cname}'] = logged[row['step']][f'loss/{cname}']
    r['max_abs_diff'] = max(abs(r[k] - r['logged ' + k]) for k in list(r)
                            if k.startswith('loss/'))
    rows.append(r)
  report['timmy_trajectory_transformer_lens'] = {
      'checkpoints': rows, 'max_abs_diff': max(r['max_abs_diff'] for r in rows)}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(report, f, indent=1)
  print(json.dumps({k: v for k, v in report.items() if k != 'models'}, indent=1)[:2000])
  print('wrote', args.out)


if __name__ == '__main__':
  main()
