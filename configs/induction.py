r"""The induction phase change: a 2-layer attention-only transformer on random
tokens repeated once (Olsson et al. 2022, "In-context Learning and Induction
Heads", the synthetic form of their small-model experiments).

Each row is L uniformly random tokens (of 64) followed by the same L again,
L drawn per row from 8..32 (with one fixed L a positional head solves the
repeat and no induction head forms: measured, README).
The first copy is noise (loss ln 64 = 4.159 at best); the repeat is free to a
model that has an induction head: a layer-1 head that attends from the
current token to the token after its earlier copy, reading (by K-composition)
a layer-0 previous-token head. Olsson et al. see the head form in one
"phase change" that coincides with a bump in the training loss and a drop of
the in-context-learning score.

The milestone `induction_step` is the first step at which the best layer-1
head's prefix-matching score on the probe (tinyjax.lenses: [t0, x1..x31,
x1..x31], 10 rows) exceeds 0.4 (ARENA's threshold for an induction head); it
is checked every step.

Command:
  python -m tinyjax.run --config configs/induction.py:sweep --workdir runs/induction
  python experiments/induction_study.py --workdir runs/induction   # figure + table

Expected (measured 2026-11-30, README "The induction phase change"): the
milestone in 16 of 16 seeds, at steps 458-627 (median 520); the first copy's
loss rises by 0.20-0.29 nats as the head forms (its peak within 100 steps of
the milestone in 14 of 16 seeds) and the probe's ICL score falls from 0 to
about -4 nats; loss/repeat 0.19-0.40 at step 3,000.
Run time: one seed about 1.5 minutes on a 2-core CPU; :sweep (16 seeds, one
vmapped program) 28 minutes with another training job on the same 2 cores.

Variants (`--config configs/induction.py:<arg>`):
  sweep  16 seeds.
  essential  16 seeds, 1,500 steps, a checkpoint every 20 steps: the
         trajectory for essential dynamics (experiments/essential_dynamics.py
         --split test --rows 16; docs/results/lenses-ii.md).
  smoke  40 steps of a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the init and the minibatch order.

  # --- Task: x1..xL x1..xL over single-character tokens.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'induction'
  c.task.vocab_size = 64       # tokens (base64 characters).
  c.task.length = 32           # L is drawn per row from [min_length, length]:
  c.task.min_length = 8        # rows of 2L tokens, padded to 64 (see the task's doc).
  c.task.train_rows = 20000    # fixed random rows (too many to memorize).
  c.task.eval_rows = 512       # the 'test' split, disjoint draws.
  c.task.data_seed = 0         # numpy seed of the rows (the same for every run).
  c.task.prompts = 4           # test rows used as generation prompts,
  c.task.prompt_repeat = 4     # cut this many tokens into the repeat.

  # --- Model: attention only (d_mlp 0), 2 layers.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 64
  c.model.n_layers = 2
  c.model.n_heads = 4          # heads of 16.
  c.model.d_mlp = 0            # 0 = no MLP: attention-only.
  c.model.activation = 'relu'  # unused without an MLP.
  c.model.positions = 'learned'
  c.model.max_len = 0          # 0 = the task's length (63 inputs).
  c.model.embed_scale = False
  c.model.norm = 'layernorm'
  c.model.norm_eps = 1e-5
  c.model.final_norm = True
  c.model.attn_bias = False
  c.model.mlp_bias = False
  c.model.unembed_bias = False
  c.model.tie_embeddings = False
  c.model.init_std = 0.02
  c.model.init_scale = 1.0

  # --- Optimizer: AdamW, constant after a short warmup.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 1e-3
  c.optimizer.momentum = 0.0   # sgd only
  c.optimizer.weight_decay = 0.01
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.99
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000
  c.train.batch_size = 32
  c.train.log_every = 10
  c.train.chunk_steps = 500

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 100           # test loss and the prompts' exact continuation.
  c.eval.track_generations = True
  c.eval.prompts = ()          # () = the task's prompts.
  c.eval.max_new_tokens = 28   # the rest of the repeat (up to 28 tokens).

  # --- Milestones: induction head formed; the repeat learned.
  c.milestones = {
      'induction_step': ('probe/induction_max/layer1', '>', 0.4),
      'repeat_learned_step': ('loss/repeat', '<', 1.0),
  }

  # --- Lenses (README "Lenses"): cheap ones every logged step.
  c.lenses = ml_collections.ConfigDict()
  c.lenses.every = 0            # cheap lenses every N steps (0 = every logged step).
  c.lenses.attention = True     # normalized entropy, first-position mass per head.
  c.lenses.probe = True         # prev-token / induction / duplicate scores per head.
  c.lenses.probe_len = 31       # L of the probe [t0, x1..xL, x1..xL]: fits 63 positions.
  c.lenses.probe_rows = 10      # probe rows.
  c.lenses.copying = True       # OV copy score per head.
  c.lenses.geometry = True      # distance from init, update/weight ratio per module.
  c.lenses.icl = True           # per-position loss, ICL score (late - early positions).
  c.lenses.fourier = True       # modular tasks only (Gini of embedding frequencies).
  c.lenses.sharpness_iters = 0  # > 0: top Hessian eigenvalue at checkpoints.
  c.lenses.llc = False          # LLC by SGLD at checkpoints (settings below).
  c.lenses.llc_chains = 4
  c.lenses.llc_draws = 200
  c.lenses.llc_burnin = 200
  c.lenses.llc_epsilon = 1e-3
  c.lenses.llc_gamma = 100.0
  c.lenses.llc_nbeta = 0.0      # 0 = m / ln m, m = the batch size (devinterp).
  c.lenses.llc_batch = 0        # SGLD minibatch rows; 0 = train.batch_size.
  c.lenses.attention_images = 1  # attention maps in TensorBoard for the first run.

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.log_spaced = True
  c.checkpoint.keep = 0

  c.report = ml_collections.ConfigDict()
  c.report.loss_at = (500, 1000, 3000)

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
    c.sweep.seeds = 16
  elif arg == 'essential':
    # Essential dynamics (PCA of each run's outputs on a fixed probe over its
    # checkpoints): 16 seeds, every 20 steps through the head's formation
    # (458-627 in :sweep) and the repeat's learning; half :sweep's steps to fit
    # a loaded 2-core CPU.
    c.sweep.seeds = 16
    c.train.steps = 1500
    c.checkpoint.update(every=20, log_spaced=False)  # a multiple of log_every
    c.report.loss_at = (500, 1000, 1500)
  elif arg == 'smoke':
    c.task.update(vocab_size=16, length=8, min_length=4, train_rows=256, eval_rows=32)
    c.model.update(d_model=16, n_heads=2)
    c.lenses.probe_len = 7
    c.train.update(steps=40, log_every=10, chunk_steps=20)
    c.eval.every = 20
    c.eval.max_new_tokens = 4
    c.checkpoint.update(every=20, log_spaced=False)
    c.report.loss_at = (20,)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use sweep, essential or smoke')
  return c
