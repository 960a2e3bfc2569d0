"""python -m tinyjax.bench [--cases 64x6000,1024x300] [--repeats 1] [--out bench.json]

The project against a plain-JAX loop, side by side in one process, on the
Timmy sweep (configs/timmy.py, default settings, `sweep.seeds` = runs):

  tinyjax   train.train_and_evaluate as `python -m tinyjax.run` runs it: every
            metric and lens of the config, milestones, metrics files,
            TensorBoard, checkpoints, generations, summary and report;
  plain     what a researcher writes by hand: the same NNX model, loss and
            optax SGD, `jit(scan(vmap(step)))` over all steps, the loss per
            step kept, nothing written; its runs axis sharded over the same
            devices as tinyjax's (the fair baseline);
  plain_1   the same loop on one device (what unsharded code gets; on a
            multi-core CPU tinyjax's one-device-per-core split beats it).

Each is a whole job, compilation included (a fresh program each time: jit's
cache is per function object), timed with wall clock; the ratio is
tinyjax / plain. Runs are split over one CPU device per core (--cpu_devices),
as tinyjax.run does. Prints one line per measurement and the ratios; writes JSON.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

flags.DEFINE_list('cases', ['64x6000', '1024x300'], 'RUNSxSTEPS cases to measure.')
flags.DEFINE_integer('repeats', 1, 'Alternated repetitions per case (the median is reported).')
flags.DEFINE_bool('plain_1', True, 'Also time the plain loop on one device.')
flags.DEFINE_string('out', 'bench.json', 'Where to write the figures.')
cli.define_cpu_devices_flag()
FLAGS = flags.FLAGS


def timmy(runs: int, steps: int):
  from configs import timmy as timmy_config
  cfg = timmy_config.get_config()
  with cfg.unlocked():
    cfg.train.steps = steps
    cfg.sweep.seeds = runs
  return cfg


def run_tinyjax(cfg, workdir: str) -> float:
  """Seconds for the whole job, compiled from scratch."""
  from tinyjax import train
  train._PROGRAMS.clear()  # count compilation, as a fresh process would
  t = time.perf_counter()
  train.train_and_evaluate(cfg, workdir, overwrite=True, progress=False)
  return time.perf_counter() - t


def plain_loop(cfg, shard: bool):
  """(seconds, final loss per run) of the hand-written loop; `shard` splits
  the runs over every device like tinyjax does, else one device."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec as P
  from tinyjax import model as model_lib
  from tinyjax import tasks

  t = time.perf_counter()
  runs, steps = cfg.sweep.seeds, cfg.train.steps
  task = tasks.build(cfg.task)
  batch = {k: jnp.asarray(v) for k, v in task.train.arrays().items()}
  vocab, max_len = len(task.vocab), task.max_len
  graphdef, _ = nnx.split(nnx.eval_shape(
      lambda: model_lib.build(cfg.model, vocab, max_len, nnx.Rngs(0))))
  tx = optax.sgd(cfg.optimizer.lr)

  def init(seed):
    model = model_lib.build(cfg.model, vocab, max_len,
                            nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), 0)))
    params = nnx.state(model)
    return params, tx.init(params)

  def loss_fn(params):
    logits_BxTxV, _ = nnx.merge(graphdef, params)(batch['x_NxT'])
    ce_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch['y_NxT'])
    return (ce_BxT * batch['mask_NxT']).sum() / batch['mask_NxT'].sum()

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.vmap(jax.value_and_grad(loss_fn))(params)
    updates, opt_state = jax.vmap(tx.update)(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def train(seeds):
    carry = jax.vmap(init)(seeds)
    _, loss_SxR = jax.lax.scan(step, carry, None, length=steps)
    return loss_SxR

  seeds = np.arange(runs, dtype=np.int32)
  if shard:
    from tinyjax import train as train_lib
    seeds = jax.device_put(seeds, NamedSharding(train_lib.runs_mesh(runs), P('runs')))
  loss_SxR = np.asarray(train(seeds))
  return time.perf_counter() - t, loss_SxR[-1]


def bench_case(runs: int, steps: int, root: str, repeats: int, plain_1: bool) -> dict:
  import numpy as np
  cfg = timmy(runs, steps)
  times = {'tinyjax': [], 'plain': [], 'plain_1': []}
  for i in range(repeats):  # alternated, so drift on the machine hits both
    times['plain'].append(plain_loop(cfg, shard=True)[0])
    times['tinyjax'].append(run_tinyjax(cfg, os.path.join(root, f'{runs}x{steps}_{i}')))
    if plain_1:
      times['plain_1'].append(plain_loop(cfg, shard=False)[0])
  med = {k: round(float(np.median(v)), 2) for k, v in times.items() if v}
  out = {'runs': runs, 'steps': steps, 'seconds': med,
         'all_seconds': {k: [round(x, 2) for x in v] for k, v in times.items() if v},
         'ratio': round(med['tinyjax'] / med['plain'], 3)}
  if plain_1:
    out['ratio_vs_plain_1'] = round(med['tinyjax'] / med['plain_1'], 3)
  return out


def main(argv):
  del argv  # cli.parse_flags refused any
  cases = []
  for c in FLAGS.cases:
    try:
      runs, steps = (int(x) for x in c.lower().split('x'))
      assert runs > 0 and steps > 0
    except (ValueError, AssertionError):
      cli.fail(f'--cases: {c!r} is not RUNSxSTEPS (e.g. 64x6000)')
    cases.append((runs, steps))
  if FLAGS.repeats < 1:
    cli.fail(f'--repeats: {FLAGS.repeats} is not allowed; use >= 1')
  logging.set_verbosity(logging.ERROR)
  cli.set_cpu_devices(FLAGS.cpu_devices)
  import jax
  out = {'date': time.strftime('%Y-%m-%d'), 'machine': platform.platform(),
         'processor': platform.processor(), 'cpu_count': os.cpu_count(),
         'jax': jax.__version__, 'devices': [str(d) for d in jax.devices()],
         'loadavg_before': os.getloadavg(), 'cases': []}
  with tempfile.TemporaryDirectory() as root:
    for runs, steps in cases:
      r = bench_case(runs, steps, root, FLAGS.repeats, FLAGS.plain_1)
      out['cases'].append(r)
      print(f"{runs} runs x {steps} steps: tinyjax {r['seconds']['tinyjax']} s, plain JAX "
            f"{r['seconds']['plain']} s -> {r['ratio']}x"
            + (f" (plain JAX on one device {r['seconds']['plain_1']} s -> "
               f"{r['ratio_vs_plain_1']}x)" if 'plain_1' in r['seconds'] else ''), flush=True)
  out['loadavg_after'] = os.getloadavg()  # other jobs on the machine skew timings
  with open(FLAGS.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
