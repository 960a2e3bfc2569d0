r"""Grokking in minutes on a CPU: Nanda et al.'s recipe, shrunk.

The grokking_nanda.py setup (one layer, no LayerNorm, AdamW, betas (0.9, 0.98),
full batch, `a b =` rows, only the answer scored) with a smaller modulus and
model so that four seeds train in a few minutes on two CPU cores: p = 59
(3,481 pairs), 40% of them train (1,392 rows), d_model 64, 4 heads of 16,
d_mlp 256 (57,344 parameters), lr 3e-3 (Nanda: 1e-3), weight decay 1.5
(Nanda: 1.0), 1,800 steps. Weight decay then acts on a timescale of
1 / (lr x wd) ~ 220 steps instead of 1,000. These were chosen by trying a few
settings, one seed each unless said (experiments/grokking_results.md lists them
all); Grokfast played no part in the choice.

Command:
  python -m tinyjax.run --config configs/grokking_small.py:sweep --workdir /tmp/grok_sweep --noprogress

Expected (measured, seeds 0-3): train accuracy >= 0.99 at steps 87-94
(memorization_step); test loss then *rises* (to ~10 nats) while test accuracy
sits at ~0.35 (mostly pairs whose swap (b, a) is in the training set); test
accuracy >= 0.95 at steps 725-1,400 (grokking_step, median 825; 8-15x the
memorization step), 1.000 at the end, with the weight norm falling from ~38 to
~26 as it happens.
Run time, on a 2-core CPU shared with two other jobs: 1,800 steps x 4 seeds
took 249 s CPU (238 s wall) after 22 s of compilation; the whole command 4 min
wall. One seed alone is ~4x less.

Variants (`--config configs/grokking_small.py:<arg>`):
  sweep           4 seeds, one vmapped program.
  lenses2         16 seeds, Adam's preconditioned sharpness vs 38/lr and the
                  restricted LLC per module every 100 steps
                  (experiments/lenses_ii_grokking.py; docs/results/lenses-ii.md).
  grokfast        1 run with Grokfast-EMA (alpha 0.98, lambda 2.0, the paper's).
  sweep_grokfast  4 seeds x grokfast_lambda (0, 2): both arms, one program
                  (experiments/grokking_study.py). Measured: Grokfast makes
                  grokking *later* here (median >1,762 vs 825 steps).
  llc             8 seeds with the local learning coefficient at every
                  checkpoint (every 100 steps and log-spaced early):
                  experiments/grokking_llc.py. README "Lenses".
  smoke           200 steps, for tests and a first look.
"""

import math

import ml_collections

P = 59


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the parameter init (sweep.seeds overrides it).

  # --- Task: a b = c (mod p); only c is scored; the split is fixed by split_seed.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'modular'
  c.task.p = P                 # tokens '0'..'58' then '=' (60 in all).
  c.task.op = '+'              # + - * / (division: a * b^-1, b != 0).
  c.task.show_op = False       # `a b =` as Nanda et al. (3 positions, cheaper).
  c.task.train_fraction = 0.4  # 0.3 did not grok within 3,000 steps here.
  c.task.split_seed = 0        # the split is the same for every init seed.

  # --- Model: grokking_nanda.py at half the width.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 64
  c.model.n_layers = 1
  c.model.n_heads = 4          # d_head 16.
  c.model.d_mlp = 256          # 4 x d_model.
  c.model.activation = 'relu'
  c.model.positions = 'learned'
  c.model.max_len = 0          # 0 = the task's length (3).
  c.model.embed_scale = False
  c.model.norm = 'none'        # no LayerNorm anywhere ...
  c.model.norm_eps = 1e-5      # (unused without a norm)
  c.model.final_norm = False   # ... nor before the unembedding.
  c.model.attn_bias = False
  c.model.mlp_bias = True
  c.model.unembed_bias = False
  c.model.tie_embeddings = False
  c.model.init_std = 1 / math.sqrt(64)            # randn / sqrt(d_model).
  c.model.unembed_init_std = 1 / math.sqrt(P + 1)  # randn / sqrt(d_vocab).
  c.model.init_scale = 1.0

  # --- Optimizer: Nanda's AdamW, 3x the learning rate, 1.5x the weight decay.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 3e-3
  c.optimizer.momentum = 0.0   # sgd only
  c.optimizer.weight_decay = 1.5  # 1.0: groks by 1,025-2,125 (too slow for
                                  # 5 min); 2.0: grok / memorize only 5-9x.
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.98
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 10
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 0.0
  c.optimizer.grokfast_alpha = 0.98  # Grokfast-EMA decay (Lee et al. default).
  c.optimizer.grokfast_lambda = 0.0  # Grokfast gain (paper: 2.0); 0 = off.

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1800
  c.train.batch_size = 0       # full batch.
  c.train.log_every = 25
  c.train.chunk_steps = 500

  # --- Evaluation: the 2,089 test pairs; also sets grokking_step's resolution.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 25
  c.eval.track_generations = False
  c.eval.prompts = ()
  c.eval.max_new_tokens = 1

  c.milestones = {
      'memorization_step': ('accuracy', '>=', 0.99),
      'grokking_step': ('test/accuracy', '>=', 0.95),
  }

  # --- Lenses (README "Lenses"): cheap ones every logged step (the probe needs
  # longer rows than `a b =`: off by itself); the LLC in the :llc variant.
  c.lenses = ml_collections.ConfigDict()
  c.lenses.every = 0            # cheap lenses every N steps (0 = every logged step).
  c.lenses.attention = True     # normalized entropy, first-position mass per head.
  c.lenses.probe = True         # repeated-token probe: needs >= 5 positions, so off here.
  c.lenses.probe_len = 50
  c.lenses.probe_rows = 10
  c.lenses.copying = True       # OV copy score per head.
  c.lenses.geometry = True      # distance from init, update/weight ratio per module.
  c.lenses.icl = True           # needs sequences >= 20 tokens: off by itself.
  c.lenses.fourier = True       # Gini of the embedding's per-frequency norms.
  c.lenses.sharpness_iters = 0  # > 0: top Hessian eigenvalue at checkpoints.
  c.lenses.llc = False          # LLC by SGLD at every checkpoint (see :llc):
  c.lenses.llc_chains = 4       # chains, vmapped (and over runs);
  c.lenses.llc_draws = 200      # draws per chain after
  c.lenses.llc_burnin = 200     # this many burn-in steps (the spec's minimal set);
  c.lenses.llc_epsilon = 1e-3   # step size and localization: chosen by
  c.lenses.llc_gamma = 100.0    # experiments/llc_calibration.py at seed 0's last step;
  c.lenses.llc_nbeta = 0.0      # 0 = m / ln m = 26.38 for m = 128 (devinterp);
  c.lenses.llc_batch = 128      # SGLD minibatch rows (devinterp's grokking notebook).
  c.lenses.attention_images = 0  # attention maps in TensorBoard for the first N runs.
  # Lenses II (docs/lenses.md), at checkpoints, off here (see :lenses2):
  c.lenses.llc_parts = ()       # restricted LLC per part: 'layers', 'heads', 'modules', 'NAME=PREFIX+..'
  c.lenses.hessian_lanczos = 0  # > 0: Lanczos steps for the Hessian's top-k and SLQ density;
  c.lenses.hessian_top_k = 5    # eigenvalues written (hessian/top1..k);
  c.lenses.hessian_vectors = 4  # SLQ start vectors;
  c.lenses.hessian_trace_samples = 8  # Hutchinson samples for hessian/trace.
  c.lenses.sharpness_precond = 0  # > 0: Lanczos steps for Adam's lambda_max(P^-1 H), vs 38/lr.

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.log_spaced = True  # 25, 50, 100, ..., 1600: the early trajectory.
  c.checkpoint.keep = 0

  # --- Output (README "What a run writes"): every run's metrics go to the
  # columnar GROUP/metrics/ files; metrics.jsonl + TensorBoard per run only
  # for small groups, else for a few seeds per condition.
  c.output = ml_collections.ConfigDict()
  c.output.per_run_files = 16  # groups of up to this many runs: files for every run;
  c.output.sample_seeds = 4    # bigger groups: for this many seeds per condition.
  c.output.across_seeds = True  # TensorBoard mean, p10/p50/p90 over seeds per condition.
  c.output.minimal = False  # True: bare mode, the loss rows and checkpoints only (docs/guide.md).

  c.sweep = ml_collections.ConfigDict()
  c.sweep.seeds = 0
  c.sweep.lrs = ()
  c.sweep.grid = {}

  if arg == 'sweep':
    c.sweep.seeds = 4
  elif arg == 'llc':
    c.sweep.seeds = 8
    c.lenses.llc = True
    c.checkpoint.every = 100     # the LLC's trajectory: 18 checkpoints + log-spaced ones.
  elif arg == 'lenses2':
    # experiments/lenses_ii_grokking.py: 16 seeds, a checkpoint every 100
    # steps with Adam's preconditioned sharpness (vs 38/lr) and the restricted
    # LLC of each module (1 chain of 50 + 100 steps: sized for a loaded 2-core
    # CPU, a rough LLC, comparable only within this run).
    c.sweep.seeds = 16
    c.checkpoint.every = 100
    c.checkpoint.log_spaced = False
    c.lenses.llc_chains = 1
    c.lenses.llc_draws = 100
    c.lenses.llc_burnin = 50
    c.lenses.llc_parts = ('modules',)
    c.lenses.sharpness_precond = 16
  elif arg == 'grokfast':
    c.optimizer.grokfast_lambda = 2.0
  elif arg == 'sweep_grokfast':
    c.sweep.seeds = 4
    c.sweep.grid = {'optimizer': {'grokfast_lambda': (0.0, 2.0)}}
  elif arg == 'smoke':
    c.train.steps = 200
    c.train.chunk_steps = 100
    c.checkpoint.every = 0
    c.checkpoint.log_spaced = False
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use sweep, llc, lenses2, grokfast, '
                     'sweep_grokfast or smoke')
  return c
