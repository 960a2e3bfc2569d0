"""Where the test accuracy of the grokking plateau comes from.

  python experiments/grokking_commutativity.py --workdir /tmp/grok_sweep [--steps 200,400,800,1600]

For a commutative op (+, *) a test pair (a, b) whose swap (b, a) is in the
training set can be answered by memorization plus symmetry. This splits each
checkpoint's test accuracy into those pairs and the rest (the ones only a
general algorithm gets right), for every run of a finished modular workdir.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from tinyjax import checkpoint as ckpt_lib  # noqa: E402
from tinyjax import program as program_lib  # noqa: E402
from tinyjax import sweep as sweep_lib  # noqa: E402
from tinyjax import tasks  # noqa: E402
from tinyjax import train  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', required=True)
  ap.add_argument('--steps', default='200,400,800,1600')
  a = ap.parse_args()
  config = train.load_config(a.workdir)
  t = config.task
  train_pairs, test_pairs = tasks.modular_split(t.p, t.op, t.train_fraction, t.split_seed)
  seen = set(train_pairs)
  swap_seen = np.array([(b, x) in seen for x, b in test_pairs])
  print(f'{swap_seen.mean():.3f} of the test pairs have their swap in the training set')
  print('| run | step | test acc | swap in train | swap not in train |')
  print('|---|---|---|---|---|')
  for group in sweep_lib.expand(config):
    task = train.build_task(group.config)
    prog = program_lib.Program(group.config, task)
    hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
    mgr = ckpt_lib.manager(a.workdir, group.name, read_only=True)
    target = ckpt_lib.numpy_target(prog.init, hp)
    test = task.evals['test']
    for step in (int(s) for s in a.steps.split(',')):
      got, state = ckpt_lib.restore_latest(mgr, target, at_step=step)
      if state is None:
        print(f'(no checkpoint at step {step})')
        continue
      for r, run in enumerate(group.runs):
        params = jax.tree.map(lambda x: x[r], state['params'])
        logits_NxTxV, _ = nnx.merge(prog.graphdef, params)(test.x_NxT)
        right = np.asarray(logits_NxTxV[:, -1].argmax(-1) == test.y_NxT[:, -1])
        print(f"| {run['name']} | {step} | {right.mean():.3f} | "
              f'{right[swap_seen].mean():.3f} | {right[~swap_seen].mean():.3f} |')


if __name__ == '__main__':
  main()
