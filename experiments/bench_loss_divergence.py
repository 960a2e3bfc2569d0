"""Which runs make tinyjax.bench's 64 x 6,000 loss check fail, and how.

  python experiments/bench_loss_divergence.py   # ~3 min on the 2-core CPU

Trains the bench's 64 x 6,000 Timmy case with tinyjax (as the bench does) and
with the bench's plain loop (`keep_losses=True`: its per-step losses), then
lists the runs whose final losses differ most, with tinyjax's breakthrough step
and the plain loop's first step with total loss < 0.6. Writes
experiments/results/bench_loss_divergence.json. The tinyjax workdir is kept in
/tmp/bench_loss_divergence and reused by a rerun (delete it to train again).
"""
import json, os, sys
import numpy as np
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import tinyjax.bench as b
cfg = b.timmy(64, 6000)
work = '/tmp/bench_loss_divergence'
if not os.path.exists(os.path.join(work, 'summary.json')):
  b.run_tinyjax(cfg, work)
s0 = json.load(open(os.path.join(work, 'summary.json')))
runs = sorted(s0['runs'], key=lambda r: r['hparams']['seed'])
fin_t = np.asarray([r['final']['loss'] for r in runs])
_, fin_p, L = b.plain_loop(cfg, shard=True, keep_losses=True)  # L: steps x runs
d = np.abs(fin_t - fin_p)
worst = []
for i in np.argsort(-d)[:6]:
  below = L[:, i] < 0.6
  worst.append(dict(seed=int(i), tinyjax_final=float(fin_t[i]), plain_final=float(fin_p[i]),
                    diff=float(d[i]), tinyjax_breakthrough=runs[i]['breakthrough_step'],
                    plain_first_loss_below_0_6=int(np.argmax(below)) if below.any() else None))
out = dict(runs=64, steps=6000, n_over_tol=int((d > b.LOSS_ATOL + b.LOSS_RTOL * np.abs(fin_t)).sum()),
           worst=worst)
with open(os.path.join(ROOT, 'experiments', 'results', 'bench_loss_divergence.json'), 'w') as f:
  json.dump(out, f, indent=1)
print(json.dumps(out))
