r"""Pillmish: a word-level GPT-2-style model of about 5M parameters on TinyStories.

Reproduces the model of Pillmish v2 (../shared/specs/pillmish.md; the author's
code is not available, so everything below the tokenizer is a choice): a
word-level HF tokenizer (lowercase, Whitespace pre-split \w+|[^\w\s]+, the
trainer's 30,000 cap, [UNK]), a GPT-2 decoder (pre-LN, GELU (tanh), MLP 4d,
learned positions, dropout 0.1, LayerNorm eps 1e-5, N(0, 0.02) init, head tied
to the word embedding) trained with plain causal cross-entropy, and decoding
under the Pilish constraint (the n-th word has as many letters as the n-th
digit of pi, 0 = 10 letters):

  python -m tinyjax.generate --workdir runs/pillmish --prompt "once upon a time" \
      --constraint pilish --max_new_tokens 60

Data: the full TinyStories (2.1M stories) is on a hub no machine here reaches;
the ~5 MB of real TinyStories text in ../shared/data/tinystories ships in
tinyjax/data/ (README there: provenance, sha256): train = train_head.txt +
train_cont_lower.txt (~0.97M word tokens, ~7.8k word types instead of the
original's 30k vocabulary), validation = valid_head.txt. With 5M parameters on
under 1M training tokens the model overfits: the val loss is the measure.

Choices where the spec says UNKNOWN: d_model 256, 4 layers, 4 heads (of 64),
context 256 (the spec's 5.2M row for a local ~7.8k vocabulary: the word
embedding is 38% of the parameters); AdamW lr 1e-3, betas (0.9, 0.999),
weight decay 0.01, 100 warmup steps then cosine to 0, gradient clip 1.0 (the
HF Trainer's default), batch 8 windows of 256 words, 2,000 steps (about 4
passes over the training text; the original trained 45 minutes on a GPU);
samples at temperature 0.8 with top-k 40 (the original's sampling is unknown).

Command:
  python -m tinyjax.run --config configs/pillmish.py --workdir runs/pillmish

Expected (measured 2026-11-30, seed 0, README "Pillmish"): 5,230,592
parameters, vocabulary 7,834; val loss 4.18 at step 200, 3.28 at 1000, 3.05
at 2000 (train 2.88); samples in TinyStories style with `."` tokens; Pilish
decoding 100% compliant (4,320 of 4,320 words over 8 seeds and 3
temperatures), per-word NLL under the free model 4.12 with beam 8, 4.86
greedy, 2.93 for free samples. Run time: 35 min on a 2-core CPU (~1 s a step).

Variants (`--config configs/pillmish.py:<arg>`):
  smoke  a 2-layer, 32-wide model on 32-word windows of the validation text for
         20 steps (tests).
"""

import string

import ml_collections

PROMPTS = ('once upon a time', 'the king and the queen', 'tom saw a cat')


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the init, the windows, dropout and the eval windows.

  # --- Task: windows of the word stream of TinyStories.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'corpus'
  c.task.path = 'tinyjax/data/tinystories_train.txt.xz'   # shipped; relative = project root.
  c.task.sha256 = 'a24e672ca9abd4ca6687201bee46066d1ec144cb6099a1eeb6ccdc6123f33fd5'
  c.task.val_path = 'tinyjax/data/tinystories_valid.txt.xz'  # held-out text (validation split).
  c.task.val_sha256 = '5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6'
  c.task.tokenizer = ml_collections.ConfigDict()
  c.task.tokenizer.kind = 'word'       # HF WordLevel over Whitespace pre-splits.
  c.task.tokenizer.lowercase = True    # every recorded output is lowercase.
  c.task.tokenizer.vocab_size = 30000  # WordLevelTrainer's default cap (local text: ~7.8k).
  c.task.tokenizer.min_frequency = 0
  c.task.tokenizer.unk = '[UNK]'
  c.task.tokenizer.special_tokens = ('[UNK]', '<|endoftext|>')  # story separator kept whole.
  c.task.tokenizer.eos = ''            # samples run to max_new_tokens, as the original.
  c.task.train_fraction = 0.9          # unused: val_path is set.
  c.task.block_size = 256              # context (n_positions).
  c.task.eval_iters = 20               # random batches per split per evaluation.
  c.task.eval_batch_size = 8
  # Per-class losses: words (letters only), punctuation, the story separator.
  c.task.classes = {'word': string.ascii_lowercase, 'punct': string.punctuation,
                    'endoftext': ('<|endoftext|>',)}
  c.task.prompts = PROMPTS             # the original's unconstrained sample prompts.

  # --- Model: GPT-2 (GPT2LMHeadModel) at about 5.2M parameters.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 256
  c.model.n_layers = 4
  c.model.n_heads = 4
  c.model.d_mlp = 1024                 # 4 x d_model.
  c.model.activation = 'gelu'          # gelu_new (tanh approximation).
  c.model.positions = 'learned'
  c.model.max_len = 256
  c.model.embed_scale = False
  c.model.norm = 'layernorm'
  c.model.norm_eps = 1e-5
  c.model.final_norm = True            # ln_f.
  c.model.attn_bias = True             # GPT-2's c_attn and c_proj have biases.
  c.model.mlp_bias = True
  c.model.unembed_bias = False
  c.model.tie_embeddings = True        # lm_head = wte.
  c.model.dropout = 0.1                # embeddings, attention weights, residual branches.
  c.model.init = 'normal'
  c.model.init_std = 0.02
  c.model.init_scale = 1.0

  # --- Optimizer.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 1e-3
  c.optimizer.momentum = 0.0           # sgd only
  c.optimizer.weight_decay = 0.01
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'cosine'      # to 0 at decay_steps.
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = 2000       # = train.steps.
  c.optimizer.grad_clip = 1.0

  # --- Training loop.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 8               # windows of 256 words per step.
  c.train.log_every = 20
  c.train.chunk_steps = 200

  # --- Evaluation: train/val estimates, samples at the end.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 200
  c.eval.track_generations = False
  c.eval.prompts = PROMPTS
  c.eval.max_new_tokens = 100          # the recorded samples are prompt + 100 tokens.
  c.eval.temperature = 0.8
  c.eval.top_k = 40
  c.eval.top_p = 1.0
  c.eval.slide_window = False          # 100 new words never reach the 256 context.

  c.milestones = {'val_below_4_step': ('val/loss', '<', 4.0)}

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500             # plus the final step.
  c.checkpoint.log_spaced = False
  c.checkpoint.keep = 0

  c.report = ml_collections.ConfigDict()
  c.report.loss_at = (200, 1000, 2000)

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

  if arg == 'smoke':
    # The smaller validation file as both splits: tests read and tokenize 0.8 MB, not 5.
    c.task.path, c.task.sha256 = c.task.val_path, c.task.val_sha256
    c.task.block_size = 32
    c.task.eval_iters = 2
    c.task.eval_batch_size = 4
    c.model.update(d_model=32, n_layers=2, n_heads=2, d_mlp=64, max_len=32)
    c.optimizer.decay_steps = 20
    c.optimizer.warmup_steps = 5
    c.train.update(steps=20, batch_size=4, log_every=5, chunk_steps=10)
    c.eval.every = 10
    c.eval.max_new_tokens = 12
    c.checkpoint.every = 10
    c.report.loss_at = (10,)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use smoke')
  return c
