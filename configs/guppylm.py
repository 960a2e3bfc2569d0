r"""GuppyLM: an 8,726,016-parameter chat model with a fish persona.

Reproduces arman-bd/guppylm's recorded run (../shared/specs/guppylm.md): its
published chat data set (57,000 train / 3,000 test conversations, shipped in
tinyjax/data/ with sha256), rendered as
`<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n{output}<|im_end|>`;
its byte-level BPE (vocab 4096, min_frequency 2, specials <pad> <|im_start|>
<|im_end|> = ids 0, 1, 2), which our trainer reproduces token for token when
trained on the train then test strings, as the original did (on the train
split alone it does not: a test checks both); a pre-LN transformer (d 384, 6
layers, 6 heads of 64, ReLU FFN 768, LayerNorm eps 1e-5, learned positions
128, embedding tied to the head and kept at 4,096 rows, N(0, 0.02) init,
dropout 0.1 on the embeddings, the attention weights and the FFN output);
AdamW 3e-4 with betas (0.9, 0.95) and weight decay 0.1 on everything, 200
warmup steps then cosine to 3e-5, clip 1.0, batch 32, 10,000 steps, loss on
every non-pad target, eval every 200 steps on the first 1,600 test rows.

Recorded (Colab T4, 286 s): about 8.5 at step 0, eval 0.4499 at step 2,000,
best eval 0.3844 at step 9,800.

Differences: an epoch here is 1,781 full batches of a per-epoch shuffle (the
original keeps a last batch of 8); the eval loss is the token-weighted mean
over the 1,600 rows (the original: the mean of 50 per-batch means); fp32
everywhere (the original: fp16 autocast on the GPU).

Command:
  python -m tinyjax.run --config configs/guppylm.py --workdir runs/guppylm
  python -m tinyjax.run --config configs/guppylm.py:cpu --workdir runs/guppylm_cpu

Variants (`--config configs/guppylm.py:<arg>`):
  cpu    d 128, 2 layers, 1,500 steps: the loss falling and fish replies in
         minutes on a CPU (the full run is ~200 GFLOP a step: hours here).
  smoke  a tiny model on the 3,000 test conversations for 20 steps, with the
         published tokenizer (tests).

Faster on a CPU, not the recorded sample: --config.train.bucket_lengths='(40, 48)'
pads each batch to 40, 48 or 58 positions (its longest row's bucket).
"""

import ml_collections

PROMPTS = ('hi guppy', 'the cat is looking at you', 'what is the meaning of life',
           'what is the internet')


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed of the init, the minibatch order and dropout.

  # --- Task: JSONL conversations in the chat layout.
  c.task = ml_collections.ConfigDict()
  c.task.name = 'chat'
  c.task.path = 'tinyjax/data/guppylm_train.jsonl.xz'
  c.task.sha256 = '772cc91fbc14dfee7192cea7629f6fb9d40e8372672f9958c64e8c779045bd8a'
  c.task.test_path = 'tinyjax/data/guppylm_test.jsonl.xz'
  c.task.test_sha256 = '6605e5bd1d1cde4277076950b47d28563c2e0967f14a259aee4ac44208ef251a'
  c.task.tokenizer = ml_collections.ConfigDict()
  c.task.tokenizer.kind = 'bpe'        # byte-level BPE, no unk, no normalizer.
  c.task.tokenizer.vocab_size = 4096
  c.task.tokenizer.min_frequency = 2
  c.task.tokenizer.special_tokens = ('<pad>', '<|im_start|>', '<|im_end|>')
  c.task.tokenizer.eos = '<|im_end|>'  # id 2 ends a reply.
  c.task.tokenizer.path = ''           # a tokenizer.json to use instead of training one.
  c.task.train_on = 'train+test'       # what the original's tokenizer saw.
  c.task.context = 128                 # rows cut to 129 ids (none is that long).
  c.task.eval_rows = 1600              # the first 50 test batches of 32, in file order.
  c.task.prompts = PROMPTS             # the recorded sample replies' prompts.

  # --- Model: 8,726,016 parameters.
  c.model = ml_collections.ConfigDict()
  c.model.name = 'transformer'
  c.model.vocab_size = 4096            # rows 2418..4095 are never used.
  c.model.d_model = 384
  c.model.n_layers = 6
  c.model.n_heads = 6
  c.model.d_mlp = 768
  c.model.activation = 'relu'
  c.model.positions = 'learned'
  c.model.max_len = 128
  c.model.embed_scale = False
  c.model.norm = 'layernorm'
  c.model.norm_eps = 1e-5
  c.model.final_norm = True
  c.model.attn_bias = True             # fused qkv Linear with bias (same count as q, k, v).
  c.model.attn_out_bias = True
  c.model.mlp_bias = True
  c.model.unembed_bias = False
  c.model.tie_embeddings = True
  c.model.dropout = 0.1
  c.model.attn_out_dropout = False     # none after the attention's out projection.
  c.model.init = 'normal'
  c.model.init_std = 0.02
  c.model.init_scale = 1.0

  # --- Optimizer: AdamW, warmup 200, cosine 3e-4 -> 3e-5.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.lr = 3e-4
  c.optimizer.momentum = 0.0           # sgd only
  c.optimizer.weight_decay = 0.1
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.95
  c.optimizer.eps = 1e-8
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_steps = 200
  c.optimizer.decay_steps = 10000
  c.optimizer.end_lr_fraction = 0.1    # to 3e-5.
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 10000
  c.train.batch_size = 32
  c.train.log_every = 100
  c.train.chunk_steps = 1000
  # Pad an unlogged step's batch only to the first of these lengths that holds
  # its longest row (plus the data set's longest, 58), not always to 58: about
  # 1.3x fewer positions with (40, 48) (docs/benchmarks.md). () = off, as the
  # recorded losses were made: on, the same rows are batched together but the
  # dropout masks are drawn at the cut shape, so the run is a different sample.
  c.train.bucket_lengths = ()

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 200
  c.eval.track_generations = False
  c.eval.prompts = PROMPTS
  c.eval.max_new_tokens = 64
  c.eval.temperature = 0.7
  c.eval.top_k = 50
  c.eval.top_p = 1.0
  c.eval.slide_window = True           # context = the last 128 ids.

  c.milestones = {'test_below_0p5_step': ('test/loss', '<', 0.5)}

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.log_spaced = False
  c.checkpoint.keep = 0

  c.report = ml_collections.ConfigDict()
  c.report.loss_at = (200, 2000, 10000)

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

  if arg == 'cpu':
    c.model.update(d_model=128, n_layers=2, n_heads=4, d_mlp=256)
    c.optimizer.update(warmup_steps=100, decay_steps=1500, lr=1e-3)
    c.train.update(steps=1500, log_every=50, chunk_steps=500)
    c.eval.every = 250
    c.checkpoint.every = 500
    c.report.loss_at = (250, 750, 1500)
  elif arg == 'smoke':
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'  # no training: fast
    c.task.path, c.task.sha256 = c.task.test_path, c.task.test_sha256  # 3,000 rows
    c.task.eval_rows = 64
    c.model.update(d_model=32, n_layers=2, n_heads=2, d_mlp=64)
    c.optimizer.update(warmup_steps=5, decay_steps=20)
    c.train.update(steps=20, batch_size=8, log_every=5, chunk_steps=10)
    c.eval.every = 10
    c.eval.max_new_tokens = 12
    c.checkpoint.every = 10
    c.report.loss_at = (10,)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use cpu or smoke')
  return c
