r"""babyLLM: an embedding + one-hidden-layer MLP over a 4-token window, 4+4 held out.

Reproduces the setup of the babyLLM write-up (../shared/seeds/babyllm.txt):
vocabulary space, +, 0..9, = (13 tokens, ids in that order, so "1+1=2 " is
[3, 1, 3, 12, 4, 0] as in the write-up); the training data is every equation
`a+b=c ` with single-digit a and b (the trailing space ends a line) except
4+4=8; a (4-token context -> next token) pair is trained for every window that
lies inside a line. Question: after training, does the model answer `4+4=` with 8?

How the windows are expressed: the model predicts at every position from the
previous 4 tokens (left-padded with zero vectors), and the loss mask keeps
exactly the windows the original builds. In `a+b=c ` the first full window is
`a+b=` -> first answer digit, and every later window ends in the answer:
`+b=c` -> ' ' (one-digit c) or `+b=1` -> second digit and `b=1d` -> ' '. These
are the targets after the first `=`, i.e. the prompt-masked loss of the
addition task (tests/test_arith.py checks the two sets are identical): 243
windows from 99 lines. The write-up can also be read as one pair per line
(`a+b=` -> the answer's first token only); `:prefix` measures that reading.

A 4-token window cannot see `a` once the answer has started: `+7=1` follows
5+7, 6+7, ..., 9+7, so the second digit of a two-digit answer is a guess
among b candidates (and `+1=1` is followed by 0 in 9+1=10 but by ' ' in
0+1=1). 46 windows in 9 such groups allow at most 9 right: the best training
accuracy is 206/243 = 0.848 and the lowest loss (2 ln 2 + sum_{b=2..9} b ln b)
/ 243 = 0.331. 4+4= itself needs only the full window `4+4=`.

Not in the write-up, chosen by us before looking at 4+4 and not changed
after: hidden_dim 64 with tanh (Bengio et al. 2003), embeddings N(0, 1),
LeCun-normal dense layers, plain full-batch gradient descent for 3000 steps at
lr 0.3. With training metrics only, 16 seeds at lr 0.1, 0.3 and 1.0 all reached
206/243 (at lr 0.3 near step 300, so 3000 steps leave a 10x margin); at 3.0
the loss stayed far above the floor (median 0.60 after 5000 steps); 0.3 is the
middle of the working range.

Command:
  python -m tinyjax.run --config configs/babyllm.py --workdir runs/babyllm
  python -m tinyjax.run --config configs/babyllm.py:sweep --workdir runs/babyllm_sweep

Expected (measured, experiments/arith_results.md): every seed reaches the best
possible training fit, 206/243, and none answers 8: 0 of 64 seeds (95% CI
0-6%), also 0/64 with `:prefix` and 0/144 in `:grid`; the answers are 9, 6, 7,
13, ... (seed 0: 9). Run time on a 2-core CPU shared with other jobs: about
15 s for one run, 1.6 min for the 64-seed sweep.

Variants (`--config configs/babyllm.py:<arg>`, combine with commas):
  sweep   64 seeds of this config in one vmapped program (the held-out rate).
  prefix  one trained pair per line, `a+b=` -> first answer token; the summary
          reports that token (generation capped at 1 token).
  grid    16 seeds x lr (0.1, 0.3, 1.0) x hidden_dim (16, 64, 256): how much the
          rate depends on the choices above (3 compiled groups).
  smoke   a 200-step run for tests.
e.g. `--config configs/babyllm.py:prefix,sweep`.
"""

import ml_collections

DIGITS = tuple('0123456789')


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the parameter init.

  # --- Task: "a+b=c " for single digits; only the answer is scored.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'addition'
  c.task.tokens = (' ', '+') + DIGITS + ('=',)  # the write-up's ids, in order.
  c.task.eos = ' '             # the trailing space ends a line and a generation.
  c.task.max_operand = 9       # single-digit operands.
  c.task.num_train = 0         # 0 = every pair not held out (99 lines).
  c.task.held_out = ('4+4',)   # never trained; scored as the 'heldout' split.
  c.task.num_val = 0           # no other validation lines: nothing else is left.
  c.task.scored_tokens = 0     # 0 = every window in the line (see docstring).
  c.task.buckets = {}          # no bucketed exact-match (see configs/addy.py).
  c.task.bucket_size = 0
  c.task.prompts = ('4+4=',)   # decoded greedily: summary.json generations.
  c.task.data_seed = 0         # unused here (no random lines).
  # Operators are never targets (the prompt is masked): their class stays empty.
  c.task.classes = {'digit': DIGITS, 'end': (' ',), 'operator': ('+', '=')}

  # --- Model: embedding -> concat of 4 positions -> tanh hidden -> logits.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'window_mlp'
  c.model.context = 4          # tokens in the window (the write-up's context).
  c.model.embed_dim = 16       # the write-up's embedding_dim.
  c.model.hidden_dim = 64      # our choice (the write-up leaves it open).
  c.model.activation = 'tanh'  # Bengio-style.
  c.model.embed_init_std = 1.0  # embeddings N(0, 1); dense layers LeCun normal.
  c.model.init_scale = 1.0     # multiplies the whole init (sweepable, traced).

  # --- Optimizer: plain full-batch gradient descent.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'
  c.optimizer.lr = 0.3
  c.optimizer.momentum = 0.0
  c.optimizer.weight_decay = 0.0
  c.optimizer.b1 = 0.9         # adam/adamw only
  c.optimizer.b2 = 0.999       # adam/adamw only
  c.optimizer.eps = 1e-8       # adam/adamw only
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 0.0

  # --- Training loop: full batch, 243 windows a step.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000
  c.train.batch_size = 0       # 0 = full batch.
  c.train.log_every = 10
  c.train.chunk_steps = 1000

  # --- Evaluation: held-out loss and the greedy answer to 4+4=.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 50
  c.eval.track_generations = True
  c.eval.prompts = c.task.prompts
  c.eval.max_new_tokens = 8    # answers are at most 2 digits and a space.

  # --- Milestones: first step the condition held.
  c.milestones = {
      # 206/243: every window a 4-token context determines (see docstring).
      'train_fit_step': ('accuracy', '>=', 0.8477),
      'heldout_correct_step': ('generation/4+4=', '>=', 1.0),
  }

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.log_spaced = False
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

  parts = set(arg.split(',')) if arg else set()
  if unknown := parts - {'sweep', 'grid', 'prefix', 'smoke'}:
    raise ValueError(f'unknown config variant {sorted(unknown)}; use sweep, grid, '
                     'prefix or smoke (comma-separated)')
  if 'prefix' in parts:  # the other reading: one pair per line, "a+b=" -> c's 1st digit
    c.task.scored_tokens = 1
    c.eval.track_generations = False  # what follows the first digit is untrained
    c.eval.max_new_tokens = 1         # summary: the predicted token after "4+4="
    c.milestones = {'train_fit_step': ('accuracy', '>=', 1.0),
                    'heldout_correct_step': ('heldout/accuracy', '>=', 1.0)}
  if 'sweep' in parts:
    c.sweep.seeds = 64
  if 'grid' in parts:
    c.sweep.seeds = 16
    c.sweep.lrs = (0.1, 0.3, 1.0)
    c.sweep.grid = {'model': {'hidden_dim': (16, 64, 256)}}
  if 'smoke' in parts:
    c.train.steps = 200
    c.train.chunk_steps = 100
    c.checkpoint.every = 100
  return c
