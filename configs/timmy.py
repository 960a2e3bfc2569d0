r"""Timmy: a 6,560-parameter transformer that learns to repeat a colour five times.

Reproduces the recorded run of hellm-world's Timmy (../shared/specs/timmy.md):
plain full-batch gradient descent at lr 0.1 on the five lines red..blue (violet
held out). The recorded loss is 2.1209 at step 0, 0.7264 at 200, 0.7173 at 1000,
0.7159 at 3000 (a plateau: spaces and EOS learned, colours a uniform 1-in-5
guess, loss/content = ln 5), then a breakthrough near step 4160 to 0.019 at 4999.

Command:
  python -m tinyjax.run --config configs/timmy.py --workdir runs/timmy

Expected (measured 2026-11-21 and 2026-12-03, README "Results"): loss 0.7262 /
0.7173 / 0.7159 at steps 200 / 1000 / 3000 (recorded 0.7264 / 0.7173 /
0.7159), breakthrough (loss/content < 0.8) at step 4038, loss 0.0045 at 6000
(0.004543; 0.004559, 0.0046, before the one-copy step of 2026-12-03),
`blue` -> ' blue blue blue blue'. violet -> ' blue blue blue blue': the
held-out colour is NOT repeated (0 of 96 runs in the :sweep). Across seeds at lr 0.1 the breakthrough
comes at steps 2500-5400 (median 3830).
Run time: about 10 s on an idle 2-core CPU (about 30 s with other jobs on it).

Variants (`--config configs/timmy.py:<arg>`):
  sweep  32 seeds x lr (0.03, 0.1, 0.3): all 96 runs one vmapped program
         (about 1.5 minutes on a 2-core CPU).
  lenses2  16 seeds with the restricted LLC per layer / head / OV and QK pair
         and the sharpness at a checkpoint every 250 steps
         (experiments/lenses_ii_timmy.py; docs/results/lenses-ii.md).
  smoke  a 200-step run for tests and a first look.
"""

import ml_collections

COLOURS = ('red', 'orange', 'yellow', 'green', 'blue', 'violet')


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the parameter init (and minibatch order, if any).

  # --- Task: one colour repeated, e.g. "red red red red red<EOS>".
  c.task = ml_collections.ConfigDict()
  c.task.name = 'repeat'
  c.task.tokens = COLOURS      # content tokens; vocabulary order = these, then
  c.task.separator = ' '       # the separator token,
  c.task.eos = '<EOS>'         # then the end-of-sequence token (8 tokens in all).
  c.task.repeats = 5           # colour occurrences per line.
  c.task.held_out = ('violet',)  # never trained; scored as the 'heldout' split.
  # Token classes for per-class loss/accuracy; they must partition the targets.
  c.task.classes = {'content': COLOURS, 'space': (' ',), 'eos': ('<EOS>',)}

  # --- Model: exactly the hellm-world transformer (spec: 6,560 parameters).
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 16
  c.model.n_layers = 2
  c.model.n_heads = 2          # heads of 8 = column slices of Q/K/V.
  c.model.d_mlp = 64           # 4 x d_model.
  c.model.activation = 'relu'
  c.model.positions = 'sinusoidal'  # sin on even, cos on odd features.
  c.model.max_len = 0          # learned positions only; 0 = the task's length.
  c.model.embed_scale = True   # token embedding x sqrt(d_model) = x4.
  c.model.norm = 'standardize'  # (x - mean) / (std + eps), no gain or bias.
  c.model.norm_eps = 2.2e-16   # the original adds machine epsilon to the std.
  c.model.final_norm = True    # norm before the unembedding.
  c.model.attn_bias = False
  c.model.mlp_bias = True
  c.model.unembed_bias = False
  c.model.tie_embeddings = False
  c.model.init_std = 0.02      # every matrix N(0, 0.02); biases 0.
  c.model.init_scale = 1.0     # multiplies the whole init (sweepable, traced).

  # --- Optimizer: the recorded run used plain full-batch GD at lr 0.1.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'     # sgd | adam | adamw
  c.optimizer.lr = 0.1         # (hellm-world's tagged release later used 0.03)
  c.optimizer.momentum = 0.0
  c.optimizer.weight_decay = 0.0
  c.optimizer.b1 = 0.9         # adam/adamw only
  c.optimizer.b2 = 0.999       # adam/adamw only
  c.optimizer.eps = 1e-8       # adam/adamw only
  c.optimizer.schedule = 'constant'  # constant | cosine
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_steps = 0  # cosine only
  c.optimizer.grad_clip = 0.0  # 0 = off

  # --- Training loop.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 6000         # recorded run: 5000; 6000 leaves room for late seeds.
  c.train.batch_size = 0       # 0 = full batch (all five lines every step).
  c.train.log_every = 10       # metric row every N steps (computed every step).
  c.train.chunk_steps = 1000   # steps per device round-trip (one lax.scan).

  # --- Evaluation (held-out split, generations) on a coarser schedule.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 50            # heldout loss + generation exact-match every N steps.
  c.eval.track_generations = True  # greedy-decode every prompt at eval steps.
  c.eval.prompts = COLOURS     # summary.json gets the greedy continuation of each.
  c.eval.max_new_tokens = 100  # generation cap, as the original.

  # --- Milestones: first step a condition holds, exact to the step for train
  # metrics (checked every step), to eval.every for eval metrics.
  c.milestones = {
      'breakthrough_step': ('loss/content', '<', 0.8),
      'heldout_correct_step': ('generation/violet', '>=', 1.0),
  }

  # --- Lenses (tinyjax.lenses, README "Lenses"): the cheap ones in every logged
  # step (cost: README), the expensive ones at checkpoints, off here.
  c.lenses = ml_collections.ConfigDict()
  c.lenses.every = 50           # cheap lenses every N steps (0 = every logged step):
  c.lenses.log_spaced = True    # and at steps 10, 20, 40, 80, ... (the fast start);
                                # null in the rows between. 50, not 10: the lenses
                                # were 13% of a 64-seed job (docs/benchmarks.md);
                                # a study that reads them every 10 steps passes
                                # --config.lenses.every=0 (experiments/timmy_mechanism.py).
  c.lenses.attention = True     # normalized entropy, first-position mass per head.
  c.lenses.probe = True         # prev-token / induction / duplicate scores per head on
  c.lenses.probe_len = 50       # [t0, x1..xL, x1..xL], L cut to the context (Timmy: 4),
  c.lenses.probe_rows = 10      # this many random rows.
  c.lenses.copying = True       # OV copy score per head.
  c.lenses.geometry = True      # distance from init, update/weight ratio per module.
  c.lenses.icl = True           # per-position loss, ICL score (sequences >= 20 tokens: not here).
  c.lenses.fourier = True       # modular tasks only (Gini of embedding frequencies).
  c.lenses.sharpness_iters = 0  # > 0: top Hessian eigenvalue at checkpoints (vs 2/lr = 20).
  c.lenses.llc = False          # LLC by SGLD at checkpoints (devinterp's estimator):
  c.lenses.llc_chains = 4       # chains, vmapped;
  c.lenses.llc_draws = 200      # draws per chain, after
  c.lenses.llc_burnin = 200     # burn-in steps;
  c.lenses.llc_epsilon = 1e-3   # SGLD step size;
  c.lenses.llc_gamma = 100.0    # localization strength;
  c.lenses.llc_nbeta = 0.0      # n*beta; 0 = m / ln m, m = sequences in a batch (5: 3.11).
  c.lenses.llc_batch = 0        # SGLD minibatch rows; 0 = train.batch_size (here: full).
  c.lenses.attention_images = 0  # attention maps in TensorBoard for the first N runs.
  # Lenses II (docs/lenses.md), at checkpoints, off here (see :lenses2):
  c.lenses.llc_parts = ()       # restricted LLC per part: 'layers', 'heads', 'modules', 'NAME=PREFIX+..'
  c.lenses.hessian_lanczos = 0  # > 0: Lanczos steps for the Hessian's top-k and SLQ density;
  c.lenses.hessian_top_k = 5    # eigenvalues written (hessian/top1..k);
  c.lenses.hessian_vectors = 4  # SLQ start vectors;
  c.lenses.hessian_trace_samples = 8  # Hutchinson samples for hessian/trace.
  c.lenses.sharpness_precond = 0  # > 0: Lanczos steps for Adam's lambda_max(P^-1 H) (Adam only).

  # --- Checkpoints (orbax): the trajectory is the point.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000    # plus the final step.
  c.checkpoint.log_spaced = True  # also at log_every x 2^k (10, 20, 40, ...).
  c.checkpoint.keep = 0        # 0 = keep all.

  # --- Sweep report: loss at these steps per run (the recorded curve's points).
  c.report = ml_collections.ConfigDict()
  c.report.loss_at = (200, 1000, 3000)

  # --- Output (README "What a run writes"): every run's metrics go to the
  # columnar GROUP/metrics/ files; metrics.jsonl + TensorBoard per run only
  # for small groups, else for a few seeds per condition.
  c.output = ml_collections.ConfigDict()
  c.output.per_run_files = 16  # groups of up to this many runs: files for every run;
  c.output.sample_seeds = 4    # bigger groups: for this many seeds per condition.
  c.output.across_seeds = True  # TensorBoard mean, p10/p50/p90 over seeds per condition.
  c.output.minimal = False  # True: bare mode, the loss rows and checkpoints only (docs/guide.md).

  # --- Sweep: seeds and traced hyperparameters share one compiled program.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.seeds = 0            # N > 0: seeds 0..N-1 instead of `seed`.
  c.sweep.lrs = ()             # learning rates (optimizer.lr) to sweep.
  c.sweep.grid = {}            # other axes, nested like the config:
                               # {'optimizer': {'momentum': (0.0, 0.9)}}.

  if arg == 'sweep':
    c.sweep.seeds = 32
    c.sweep.lrs = (0.03, 0.1, 0.3)
    c.checkpoint.log_spaced = False  # 96 runs: keep the checkpoint count modest.
  elif arg == 'lenses2':
    # experiments/lenses_ii_timmy.py: 16 seeds at lr 0.1, a checkpoint every
    # 250 steps with the restricted LLC of each layer, head and each layer's
    # OV / QK pair, the whole-model LLC, and the sharpness (power iteration
    # and Lanczos top-k) against 2/lr = 20.
    c.sweep.seeds = 16
    c.checkpoint.every = 250
    c.checkpoint.log_spaced = False
    c.lenses.llc = True
    c.lenses.llc_chains = 2
    c.lenses.llc_draws = 100
    c.lenses.llc_burnin = 50
    c.lenses.llc_parts = ('layers', 'heads', 'ov0=blocks.0.attn.v+blocks.0.attn.o',
                          'qk0=blocks.0.attn.q+blocks.0.attn.k',
                          'ov1=blocks.1.attn.v+blocks.1.attn.o',
                          'qk1=blocks.1.attn.q+blocks.1.attn.k')
    c.lenses.sharpness_iters = 20
    c.lenses.hessian_lanczos = 20
    c.lenses.hessian_top_k = 3
    c.lenses.hessian_vectors = 1
    c.lenses.hessian_trace_samples = 2
  elif arg == 'smoke':
    c.train.steps = 200
    c.train.chunk_steps = 100
    c.checkpoint.every = 100
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use sweep, lenses2 or smoke')
  return c
