r"""tiny-llm: an 824,897-parameter character-level GPT on tiny Shakespeare.

Reproduces tiny-llm v1 ("the kid"), the model behind peek
(../shared/specs/tiny-llm-peek.md): the 65 distinct characters of tiny
Shakespeare sorted by code point, a 90% / 10% contiguous train/val split, a
Karpathy-style pre-LN GPT (d 128, 4 layers, 4 heads of 32, ReLU MLP 512,
learned positions 128, q/k/v without bias, output projection, MLP and an untied
lm_head with bias, LayerNorm eps 1e-5) with PyTorch's default init, AdamW at a
constant 3e-4, 5,000 steps of 32 random windows of 128 characters, train and
val loss at the recorded steps 0, 100, 250, 500, 1000, 1500, 2000, 3000, 4000,
5000, and a 160-character sample after "ROMEO:" at temperature 1 with the
window sliding over the last 128 characters.

Recorded (peek's training.json): train / val 4.330 / 4.339 at step 0, 2.671 /
2.643 at 100, 2.116 / 2.162 at 1000, 1.469 / 1.677 at 4000, 1.476 / 1.741 at
5000 (val lowest at 4000: overfitting).

What the original does not record, chosen here (spec section 4, UNKNOWN):
AdamW weight decay 0.01, betas (0.9, 0.999), eps 1e-8 (PyTorch's defaults);
eval_iters 50 batches of 32 x 128 per split (Karpathy's gpt.py uses 200; 50
keeps the evaluation's standard error near 0.005 at a quarter of the cost);
the 90% split (the nanoGPT convention; the site's "sees the dataset about 20x"
fits it); 5,000 updates (the row at step 5000 is the model after 5,000
updates, evaluated before any 5,001st).

Command:
  python -m tinyjax.run --config configs/tiny_llm.py --workdir runs/tiny_llm
  python -m tinyjax.generate --workdir runs/tiny_llm --prompt ROMEO: --temperature 1 \
      --max_new_tokens 160 --seed 1
  python -m tinyjax.peek --workdir runs/tiny_llm --out runs/tiny_llm/peek

Expected (measured 2026-11-30, seed 0, README "tiny-llm, reproduced"): loss
4.329 / 4.331 at step 0, 2.645 / 2.653 at 100, 2.090 / 2.138 at 1000, 1.537 /
1.720 at 4000, 1.492 / 1.674 at 5000 (train / val): every recorded point
within 0.068, but val does NOT rise from 4000 to 5000 as recorded. Samples
after "ROMEO:" turn from random characters into NAME: lines and
pseudo-Shakespeare. Run time: 31 min on a 2-core CPU (0.37 s a step).

Variants (`--config configs/tiny_llm.py:<arg>`):
  sweep  8 seeds as one vmapped program (for a GPU: 8x the CPU time here).
  smoke  a 2-layer, 32-wide model on 32-character windows for 20 steps (tests).
"""

import string

import ml_collections

# The steps at which the original evaluated, sampled and logged (CHECKPOINTS).
RECORDED_STEPS = (0, 100, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000)


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the init, the training windows and the eval windows.

  # --- Task: windows of the character stream of tiny Shakespeare.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'corpus'
  c.task.path = 'tinyjax/data/tinyshakespeare.txt.xz'  # shipped; relative = project root.
  # sha256 of the decompressed text (char-rnn's input.txt); '' = do not check.
  c.task.sha256 = '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'
  c.task.tokenizer = ml_collections.ConfigDict()
  c.task.tokenizer.kind = 'char'   # the corpus's distinct characters, sorted (65).
  c.task.tokenizer.eos = ''        # no end-of-text token: samples run to length.
  c.task.train_fraction = 0.9      # first 90% train, last 10% val.
  c.task.block_size = 128          # context: 128 inputs, 128 next-char targets.
  c.task.eval_iters = 50           # random batches per split per evaluation.
  c.task.eval_batch_size = 32      # windows per evaluation batch (= training batch).
  # Per-class losses: which kinds of character are learned first. Character
  # sets; the digit '3' (its only digit) goes to 'other'.
  c.task.classes = {'letter': string.ascii_letters, 'space': ' ', 'newline': '\n',
                    'punct': "!$&',-.:;?"}
  c.task.prompts = ('ROMEO:',)     # the original's seed_prompt.

  # --- Model: tiny-llm v1 exactly (824,897 parameters).
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.d_model = 128            # N_EMBD.
  c.model.n_layers = 4             # N_LAYER.
  c.model.n_heads = 4              # N_HEAD: 4 heads of 32 (= 4 separate Head modules).
  c.model.d_mlp = 512              # 4 x d_model.
  c.model.activation = 'relu'
  c.model.positions = 'learned'    # pos_emb [128, 128].
  c.model.max_len = 128            # BLOCK_SIZE.
  c.model.embed_scale = False      # x = tok_emb[id] + pos_emb[t].
  c.model.norm = 'layernorm'       # pre-LN, gain and bias.
  c.model.norm_eps = 1e-5          # torch's default.
  c.model.final_norm = True        # ln_f.
  c.model.attn_bias = False        # key/query/value Linear(bias=False) ...
  c.model.attn_out_bias = True     # ... but proj Linear(128, 128) with bias.
  c.model.mlp_bias = True
  c.model.unembed_bias = True      # lm_head Linear(128, 65) with bias,
  c.model.tie_embeddings = False   # untied from tok_emb.
  c.model.init = 'torch'           # N(0,1) embeddings, U(+-1/sqrt(fan_in)) Linear: step-0 loss ~4.34.
  c.model.init_std = 0.02          # unused with init='torch'.
  c.model.init_scale = 1.0         # multiplies the whole init (traced).

  # --- Optimizer: torch.optim.AdamW at a constant 3e-4.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 3e-4
  c.optimizer.momentum = 0.0       # sgd only
  c.optimizer.weight_decay = 0.01  # torch default (UNKNOWN in the original).
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'constant'
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_steps = 0
  c.optimizer.grad_clip = 0.0      # none.

  # --- Training loop.
  c.train = ml_collections.ConfigDict()
  c.train.steps = 5000             # MAX_STEPS.
  c.train.batch_size = 32          # random windows per step.
  c.train.log_every = 50           # minibatch metric row every 50 steps.
  c.train.chunk_steps = 500        # steps per device round-trip.

  # --- Evaluation: train/val estimates at the recorded steps.
  c.eval = ml_collections.ConfigDict()
  c.eval.every = 0                 # unused: eval.steps is set.
  c.eval.steps = RECORDED_STEPS    # train/ and val/ metrics at exactly these steps.
  c.eval.track_generations = False  # no expected text to score.
  c.eval.prompts = c.task.prompts
  c.eval.max_new_tokens = 160      # the original's sample length.
  c.eval.temperature = 1.0         # torch.multinomial on the softmax: T = 1, no top-k.
  c.eval.top_k = 0
  c.eval.top_p = 1.0
  c.eval.slide_window = True       # crop to the last 128 characters, as generate().

  # --- Milestones: the steep drop (over by step ~100 in the original).
  c.milestones = {'below_2p5_step': ('loss', '<', 2.5)}

  # --- Checkpoints at the recorded steps: peek exports the trajectory from them.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 0           # only the steps below and the final one.
  c.checkpoint.steps = RECORDED_STEPS
  c.checkpoint.log_spaced = False
  c.checkpoint.keep = 0            # 0 = keep all.

  c.report = ml_collections.ConfigDict()
  c.report.loss_at = (100, 1000, 4000)

  # --- Output (README "What a run writes"): every run's metrics go to the
  # columnar GROUP/metrics/ files; metrics.jsonl + TensorBoard per run only
  # for small groups, else for a few seeds per condition.
  c.output = ml_collections.ConfigDict()
  c.output.per_run_files = 16  # groups of up to this many runs: files for every run;
  c.output.sample_seeds = 4    # bigger groups: for this many seeds per condition.
  c.output.across_seeds = True  # TensorBoard mean, p10/p50/p90 over seeds per condition.
  c.output.minimal = False  # True: bare mode, the loss rows and checkpoints only (docs/guide.md).

  c.sweep = ml_collections.ConfigDict()
  c.sweep.seeds = 0                # N > 0: seeds 0..N-1 instead of `seed`.
  c.sweep.lrs = ()
  c.sweep.grid = {}

  if arg == 'sweep':
    c.sweep.seeds = 8
  elif arg == 'smoke':
    c.task.block_size = 32
    c.task.eval_iters = 2
    c.task.eval_batch_size = 4
    c.model.update(d_model=32, n_layers=2, n_heads=2, d_mlp=64, max_len=32)
    c.train.update(steps=20, batch_size=4, log_every=5, chunk_steps=10)
    c.eval.steps = (0, 10)
    c.eval.max_new_tokens = 40
    c.checkpoint.steps = (0, 10)
    c.report.loss_at = (10,)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use sweep or smoke')
  return c
