r"""Grokking modular addition: Nanda et al. 2023 ("Progress measures for grokking
via mechanistic interpretability"), mainline run, as in their released code.

Task: (a + b) mod 113 as the three tokens `a b =` (no op token), answer scored
at '='; 30% of the 12,769 pairs train (3,830), the rest (8,939) is `test`. The
split is their gen_train_test: Python `random.seed(0)` shuffle of the a-major
pair list, so it is the same pairs (split_seed=0).
Model: 1 layer, d_model 128, 4 heads of 32, d_mlp 512, ReLU, learned positions,
no LayerNorm anywhere, untied unembedding; biases only in the MLP (their
transformers.py: W_Q/K/V/O, W_E, W_pos, W_U have none, b_in/b_out zero-init).
Init N(0, 1/sqrt(d_model)) for every matrix but W_U, which is N(0, 1/sqrt(d_vocab)).
Optimizer: AdamW lr 1e-3, weight decay 1.0 (decoupled, on every parameter, as
torch.optim.AdamW), betas (0.9, 0.98), eps 1e-8, 10-step linear warmup; full
batch; 40,000 steps (= epochs; the paper's mainline run; their code's default
is 50,000).

Known deviations: the init draws are JAX's, not torch's (seed 0 here, theirs
999/unset), so the run is the same recipe, not the same numbers; their warmup
uses lr x min(k/10, 1) at update k (0 at the first update), ours (k+1)/10;
their loss is float64, ours float32; the unembedding also has a logit for '='
(as theirs: d_vocab_out = p + 1 in transformers.py).

Command:
  python -m tinyjax.run --config configs/grokking_nanda.py --workdir runs/nanda

Expected (from the paper; the full run was NOT done here, there is no GPU in
this task): train accuracy ~1 within a few hundred steps, test loss rising
and test accuracy near chance for thousands of steps, then test loss falls
sharply and test accuracy reaches ~1 around step ~10k (grokking_step of the
order of 10k; not measured here); the weight norm falls through the cleanup.
Measured here, 300 steps (`:smoke`): memorization_step 136, test accuracy
0.036 and test loss 16.6 (rising) at step 300, 226,816 parameters (as theirs).

Run time: on a 2-core CPU shared with two other jobs, 211-238 ms per step
(247 ms CPU) after ~25 s of compilation, measured over 300 steps with
experiments/time_steps.py; extrapolated, 40,000 steps take ~2.5 h (and ~40 min
to the expected grokking). On one GPU: an ESTIMATE, not measured, of 1-3 ms per
step (the step is tiny, so launch/scan overhead dominates), i.e. a few minutes.

Variants (`--config configs/grokking_nanda.py:<arg>`):
  grokfast  the same with Grokfast-EMA (alpha 0.98, lambda 2.0, Lee et al.).
  smoke     300 steps (the CPU timing check).
"""

import math

import ml_collections

P = 113


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the parameter init (sweep.seeds overrides it).

  # --- Task: a b = c (mod p); only c is scored.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'modular'
  c.task.p = P                 # modulus; tokens '0'..'112' then '=' (114 in all).
  c.task.op = '+'              # + - * / (division: a * b^-1, b != 0).
  c.task.show_op = False       # Nanda: `a b =`; Power et al.: `a op b =`.
  c.task.train_fraction = 0.3  # of all p^2 pairs; the rest is the 'test' split.
  c.task.split_seed = 0        # their gen_train_test seed (Config.seed = 0).

  # --- Model: their transformers.py Transformer with use_ln=False.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 128
  c.model.n_layers = 1
  c.model.n_heads = 4          # d_head 32.
  c.model.d_mlp = 512          # 4 x d_model.
  c.model.activation = 'relu'
  c.model.positions = 'learned'  # W_pos, 3 positions.
  c.model.max_len = 0          # 0 = the task's length (3).
  c.model.embed_scale = False  # no x sqrt(d_model).
  c.model.norm = 'none'        # no LayerNorm in the blocks ...
  c.model.norm_eps = 1e-5      # (unused without a norm)
  c.model.final_norm = False   # ... nor before the unembedding.
  c.model.attn_bias = False    # W_Q, W_K, W_V, W_O have no biases.
  c.model.mlp_bias = True      # b_in, b_out (zero-init, weight-decayed).
  c.model.unembed_bias = False
  c.model.tie_embeddings = False
  c.model.init_std = 1 / math.sqrt(128)         # randn / sqrt(d_model).
  c.model.unembed_init_std = 1 / math.sqrt(P + 1)  # W_U: randn / sqrt(d_vocab).
  c.model.init_scale = 1.0     # multiplies the whole init (traced).

  # --- Optimizer: torch AdamW(lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98)).
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 1e-3
  c.optimizer.momentum = 0.0   # sgd only
  c.optimizer.weight_decay = 1.0  # decoupled: p -= lr * wd * p.
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.98
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 10  # their LambdaLR min(step / 10, 1).
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 0.0
  c.optimizer.grokfast_alpha = 0.98  # Grokfast-EMA decay (Lee et al. default).
  c.optimizer.grokfast_lambda = 0.0  # Grokfast gain; 0 = off (Nanda et al.).

  # --- Training loop: full batch (all 3,830 training pairs every step).
  c.train = ml_collections.ConfigDict()
  c.train.steps = 40_000
  c.train.batch_size = 0
  c.train.log_every = 100      # train metrics row every 100 steps.
  c.train.chunk_steps = 1000

  # --- Evaluation: test loss/accuracy on the 8,939 held-out pairs.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 100           # their checkpoints: every 100 epochs.
  c.eval.track_generations = False  # test/accuracy is the greedy answer already.
  c.eval.prompts = ()
  c.eval.max_new_tokens = 1

  # --- Milestones: train accuracy is checked every step, test every eval.every.
  c.milestones = {
      'memorization_step': ('accuracy', '>=', 0.99),
      'grokking_step': ('test/accuracy', '>=', 0.95),
  }

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 2000    # plus log-spaced ones for the early trajectory.
  c.checkpoint.log_spaced = True
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

  if arg == 'grokfast':
    c.optimizer.grokfast_lambda = 2.0
  elif arg == 'smoke':
    c.train.steps = 300
    c.train.chunk_steps = 100
    c.checkpoint.every = 0
    c.checkpoint.log_spaced = False
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use grokfast or smoke')
  return c
