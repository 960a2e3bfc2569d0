r"""Sparse parity: SGD on a ReLU MLP learns a k-sparse parity of n bits after a
long flat plateau, and the progress hidden during it shows in the weights.

Reproduces, at CPU scale, Barak, Edelman, Goel, Kakade, Malach, Zhang, "Hidden
Progress in Deep Learning: SGD Learns Parities Near the Computational Limit"
(NeurIPS 2022, arXiv 2207.08799): fresh uniform x in {-1,+1}^n each step, label
= the product of k of its bits, a one-hidden-layer ReLU MLP of width 1,000
trained by online SGD (lr 0.1, batch 32, weight decay 0.01, hinge loss,
constant lr). Those settings are the ones the project's spec summarises from
secondary sources (../shared/specs/sparse-parity.md); they could not be checked
against the paper's text from this machine (see docs/results/sparse-parity.md).

Everything here lives outside tinyjax/ and is named from this config:
  task.py:parity_task        the task (fresh samples drawn in the step; hinge loss)
  model.py:ParityMLP         the MLP
  measure.py:hidden_progress the lens: weight mass on S, distance from init

Command (the headline CPU point, n = 20, k = 3, 32 seeds as one vmapped sweep):
  python -m tinyjax.run --config examples/sparse_parity/config.py:sweep --workdir runs/parity
The (n, k) grid, its table and figure: python examples/sparse_parity/study.py

Expected (measured 2026-11-30, experiments/results/sparse_parity_sweep_cli.json):
all 32 seeds break through; `breakthrough_step` (test accuracy >= 0.99, to the
eval step of 50) median 675, p10 600, p90 700; the median test accuracy stays
at chance (<= 0.52) for the first ~57% of that; final test accuracy 1.0 and
lens/hidden_progress/mass_S 0.93 (median; 0.15 = k/n at init). The (n, k)
grid: docs/results/sparse-parity.md (time grows like n^1.2 for k = 3 over
n = 10-40, far below n^k). Run time: :sweep about 7 minutes on the shared
2-core CPU under load (406 s).

Variants (`--config examples/sparse_parity/config.py:<arg>`):
  sweep  32 seeds, n = 20, k = 3.
  smoke  4 seeds, n = 10, k = 2, 1,000 steps (tests, a first look).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed: the MLP's init and the stream of training samples.

  # --- Task: the label is the product of the first k of n +-1 bits.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'task.py:parity_task'  # a file next to this config (tinyjax.extend).
  c.task.n = 20                # input bits.
  c.task.k = 3                 # relevant bits (the hidden set S = the first k).
  c.task.test_rows = 1000      # the fixed test split (eval: test/accuracy).
  c.task.data_seed = 0         # draws the test split.
  c.task.loss = 'hinge'        # max(0, 1 - y f); 'ce' = logistic loss instead.

  # --- Model: one hidden ReLU layer (model.py).
  c.model = ml_collections.ConfigDict()
  c.model.name = 'model.py:ParityMLP'
  c.model.width = 1000         # hidden units.
  c.model.init_scale = 1.0     # multiplies the whole init (sweepable, traced).

  # --- Optimizer: plain minibatch SGD, constant lr, L2 weight decay (as PyTorch's
  # SGD weight_decay: added to the gradient).
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'
  c.optimizer.lr = 0.1
  c.optimizer.momentum = 0.0
  c.optimizer.weight_decay = 0.01
  c.optimizer.b1 = 0.9         # adam/adamw only
  c.optimizer.b2 = 0.999       # adam/adamw only
  c.optimizer.eps = 1e-8       # adam/adamw only
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 0.0  # 0 = off

  # --- Training loop: each step draws train.batch_size fresh samples.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000         # n = 20, k = 3: every seed breaks through by ~800.
  c.train.batch_size = 32
  c.train.log_every = 50       # metric row (and the lens) every N steps.
  c.train.chunk_steps = 1000   # steps per device round-trip.

  # --- Evaluation: the fixed test split.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 50            # test loss/accuracy every N steps (the breakthrough's resolution).
  c.eval.track_generations = False  # the MLP does not generate.
  c.eval.prompts = ()
  c.eval.max_new_tokens = 1

  # --- Milestones: first (eval) step the test accuracy reaches 0.99.
  c.milestones = {
      'breakthrough_step': ('test/accuracy', '>=', 0.99),
      'half_step': ('test/accuracy', '>=', 0.75),  # halfway from chance to perfect.
  }

  # --- Lenses: the built-in ones read transformers (off); ours is measure.py's.
  c.lenses = ml_collections.ConfigDict()
  c.lenses.attention = False
  c.lenses.probe = False
  c.lenses.copying = False
  c.lenses.geometry = False    # dist_init per module: measure.py has the total.
  c.lenses.icl = False
  c.lenses.fourier = False
  c.lenses.extra = ('measure.py:hidden_progress',)  # -> lens/hidden_progress/*

  # --- Checkpoints: every 1,000 steps (resume), none log-spaced.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.log_spaced = False
  c.checkpoint.keep = 1        # the newest only: 32 MLPs of 1,000 units each.

  # --- Output: every run's metrics in the columnar files; per-run files for 4 seeds.
  c.output = ml_collections.ConfigDict()
  c.output.per_run_files = 4
  c.output.sample_seeds = 4
  c.output.across_seeds = True
  c.output.minimal = False  # True: bare mode, the loss rows and checkpoints only (docs/guide.md).

  # --- Sweep: seeds are the runs axis of one compiled program.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.seeds = 0
  c.sweep.lrs = ()
  c.sweep.grid = {}

  if arg == 'sweep':
    c.sweep.seeds = 32
  elif arg == 'smoke':
    c.task.n, c.task.k = 10, 2
    c.train.steps = 1000
    c.train.chunk_steps = 500
    c.checkpoint.every = 500
    c.sweep.seeds = 4
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use sweep or smoke')
  return c
