"""The docs against the repository: links resolve, figures are in the files
they name, commands run as written (the short ones) or are on a checked list
(the long ones), and no page names an issue number.

The conventions (docs/sources.md says the same for writers):
- A figure linked to a stored result, `[3830](../../experiments/results/timmy_sweep.md)`:
  the link text is the figure, the target the file that holds it.
- A table followed by a line `Source: [name](path)`: every number in its body
  cells, but the first column (the row's label), is in that file.
"In the file" means: some number in the file rounds to the figure at the
figure's own decimals ("52.1" matches 52.13; "1,024" matches 1024).
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, 'README.md')] +
               glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True))
LINK = re.compile(r'!?\[([^\]]*)\]\(([^)\s]+)\)')
NUMBER = re.compile(r'\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')
FIGURE = re.compile(r'^[~<>=+-]?\s*(' + NUMBER.pattern + r')\s*(?:x|%|s|ms|us|MiB|MB)?$')
RESULT_FILE = re.compile(r'(^|/)(experiments/results/|docs/results/|experiments/)[^/]*\.(json|md|csv)$')


def _read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def _rel(path):
  return os.path.relpath(path, ROOT)


def _prose(text):
  """The page without its code blocks and inline code (commands and outputs
  are not prose; a link written in backticks is an example, not a link)."""
  return re.sub(r'`[^`\n]*`', '', re.sub(r'```.*?```', '', text, flags=re.S))


def _links(path):
  for text, target in LINK.findall(_prose(_read(path))):
    if re.match(r'^[a-z]+:', target) or target.startswith('#'):
      continue
    yield text, target, os.path.normpath(os.path.join(os.path.dirname(path), target.split('#')[0]))


def _value(token):
  return float(token.replace(',', ''))


def _decimals(token):
  mantissa = token.replace(',', '').lower().split('e')[0]
  return len(mantissa.split('.')[1]) if '.' in mantissa else 0


def _numbers_in(path):
  return [_value(t) for t in NUMBER.findall(_read(path))]


def _in_file(token, numbers):
  """Whether a figure as printed (its decimals) is some number of the file, rounded."""
  d, tol = _value(token), 0.5 * 10 ** -_decimals(token) + 1e-9
  if 'e' in token.lower():
    return any(abs(f - d) <= abs(d) * 0.05 for f in numbers)
  return any(abs(f - d) <= tol for f in numbers)


def test_the_readme_is_a_landing_page():
  assert len(_read(os.path.join(ROOT, 'README.md')).splitlines()) <= 200


def test_every_relative_link_resolves():
  broken = [f'{_rel(p)}: {target}' for p in PAGES for _, target, full in _links(p)
            if not os.path.exists(full)]
  assert not broken, broken


def _slug(heading):
  """GitHub's anchor of a heading."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_every_anchor_names_a_heading_of_its_page():
  for p in PAGES:
    for _, target, full in _links(p):
      if '#' in target and full.endswith('.md'):
        anchor = target.split('#', 1)[1]
        slugs = {_slug(h) for h in re.findall(r'(?m)^#+ (.*)$', _prose(_read(full)))}
        assert anchor in slugs, f'{_rel(p)}: {target}'


def test_every_docs_page_is_linked_from_another_page():
  linked = {full for p in PAGES for _, _, full in _links(p)}
  for p in PAGES:
    if p.endswith(os.sep + 'README.md') and os.path.dirname(p) == ROOT:
      continue
    assert p in linked, f'{_rel(p)} is linked from no page'


def test_no_page_names_an_issue_number():
  # The studies' own results pages too, which the docs link.
  for p in PAGES + glob.glob(os.path.join(ROOT, 'experiments', '*.md')):
    text = _read(p).replace('bench_issue15.json', 'bench_FILE.json')
    hits = re.findall(r'(?i)\bissues?[\s-]*#?\d+|(?<![\w&/])#\d+\b|\(issue[^)]*\)', text)
    assert not hits, (_rel(p), hits)


def _linked_figures():
  for p in PAGES:
    for text, target, full in _links(p):
      m = FIGURE.match(text.strip().strip('*'))
      if m and RESULT_FILE.search(_rel(full).replace(os.sep, '/')):
        yield p, m.group(1), full


def _sourced_tables():
  """(page, the figures of a table's body cells, the file its Source: line names)."""
  for p in PAGES:
    lines = _prose(_read(p)).splitlines()
    for i, line in enumerate(lines):
      m = re.match(r'\s*Source: \[[^\]]*\]\(([^)]+)\)\s*$', line)
      if not m:
        continue
      j = i - 1
      while j >= 0 and not lines[j].strip():
        j -= 1
      rows = []
      while j >= 0 and lines[j].strip().startswith('|'):
        rows.insert(0, lines[j])
        j -= 1
      assert len(rows) >= 3, f'{_rel(p)}: a Source: line not under a table: {line}'
      cells = [c for r in rows[2:] for c in r.strip().strip('|').split('|')[1:]]
      figures = [t for c in cells for t in NUMBER.findall(re.sub(r'\([^)]*\)', '', c))]
      yield p, figures, os.path.normpath(os.path.join(os.path.dirname(p), m.group(1)))


def test_linked_figures_are_in_the_file_they_link():
  figures = list(_linked_figures())
  assert len(figures) >= 20  # the convention is in use (a regex that matched nothing passes)
  wrong = [f'{_rel(p)}: {fig} not in {_rel(f)}' for p, fig, f in figures
           if not _in_file(fig, _numbers_in(f))]
  assert not wrong, wrong


def test_every_sourced_table_is_in_its_file():
  tables = list(_sourced_tables())
  assert len(tables) >= 8
  wrong = []
  for p, figures, f in tables:
    assert os.path.exists(f), f
    numbers = _numbers_in(f)
    wrong += [f'{_rel(p)}: {fig} not in {_rel(f)}' for fig in figures if not _in_file(fig, numbers)]
  assert not wrong, wrong


def test_the_figure_check_catches_a_wrong_figure(tmp_path):
  """The matcher itself: a figure off by one in its last digit is caught."""
  f = tmp_path / 'r.json'
  f.write_text(json.dumps({'seconds': 52.13, 'ratio': 1.099, 'runs': 1024}))
  numbers = _numbers_in(str(f))
  assert _in_file('52.1', numbers) and _in_file('1.10', numbers) and _in_file('1,024', numbers)
  assert not _in_file('52.2', numbers) and not _in_file('1.11', numbers)
  assert not _in_file('1,025', numbers) and not _in_file('53', numbers)


# ---- commands -------------------------------------------------------------

def _commands():
  """Every command line of the docs' bash blocks (continuations joined,
  comments dropped) and every command quoted inline (`python ...`)."""
  out = []
  for p in PAGES:
    text = _read(p)
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
      joined = re.sub(r'\\\n\s*', ' ', block)
      for line in joined.splitlines():
        line = re.sub(r'\s+#\s.*$', '', line).strip()
        if line and not line.startswith('#'):
          out.append(' '.join(line.split()))
    prose = re.sub(r'```.*?```', '', text, flags=re.S).replace('\n', ' ')
    out += [' '.join(c.split()) for c in re.findall(r'`([^`]+)`', prose)
            if re.match(r'(python|pip|tensorboard)\b', c.strip())]
  return out


# Smoke-run here, as written but for the workdir (a temporary one): the cheap ones.
SMOKE = [
    'python -m tinyjax.run --config configs/timmy.py:smoke --workdir runs/timmy_smoke',
    'python -m tinyjax.generate --workdir runs/timmy_smoke --prompt blue',
]

# Too long, too big or needing what a test has not (a cluster, a browser, a
# network install): checked statically below (the module or script exists,
# every flag is defined, the config and its variant load, every --config.x
# override names a field) but not run.
LONG = {
    'python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt',
    'python -m tinyjax.run --config configs/timmy.py --workdir runs/timmy',
    'python -m pytest -q',
    'python -m pytest -m slow',
    'tensorboard --logdir runs/timmy',
    'python -m tinyjax.generate --workdir runs/timmy --prompt blue',
    'python -m tinyjax.generate --workdir runs/timmy --prompt violet --step 1000',
    'python -m tinyjax.run --config configs/timmy.py:sweep --workdir runs/timmy_sweep',
    'python -m tinyjax.run --config configs/tiny_llm.py --workdir runs/tiny_llm',
    'python -m tinyjax.generate --workdir runs/tiny_llm --prompt ROMEO: --temperature 1 --seed 1',
    'python -m tinyjax.peek --workdir runs/tiny_llm --out runs/tiny_llm/peek',
    'python -m tinyjax.run --config configs/guppylm.py:cpu --workdir runs/guppy',
    'python -m tinyjax.chat --workdir runs/guppy',
    'echo "hi guppy" | python -m tinyjax.chat --workdir runs/guppy',
    'pip install -r requirements-export.txt && python -m tinyjax.export_onnx --workdir runs/guppy --out guppy.onnx --quantize uint8',
    'python -m tinyjax.run --config configs/pillmish.py --workdir runs/pillmish',
    'python -m tinyjax.generate --workdir runs/pillmish --prompt "once upon a time" --constraint pilish --max_new_tokens 40 --beam 8',
    'python -m tinyjax.generate --workdir runs/pillmish --prompt "once upon a time" --constraint pilish --max_new_tokens 40 --temperature 0.7 --seed 3',
    'python -m tinyjax.run --config configs/timmy.py:sweep --workdir runs/sweep',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=64 --config.sweep.lrs="(0.03, 0.1)" --workdir runs/sweep2',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=4096 --workdir /shared/runs/timmy4096 --coordinator_address=HOST0:12355 --num_processes=4 --process_id=$I',
    'srun python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=4096 --workdir /shared/runs/timmy4096 --distributed',
    'gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command "cd tinyjax && python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=4096 --workdir /mnt/shared/timmy4096 --distributed"',
    # Quoted inline in the pages (the studies' commands).
    'pip install -r requirements-export.txt',
    'pip install torch',
    'python -m tinyjax.bench',
    'python -m tinyjax.bench --cost_table',
    'python -m tinyjax.bench --cost_table --out experiments/results/cost_table.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --plain_1=False --out experiments/results/bench_cold.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --plain_1=False --warm_cache --out experiments/results/bench_warm.json',
    'python -m tinyjax.bench --warm_cache',
    'python experiments/cost_profile.py',
    'python experiments/cost_profile.py --runs 64 --steps 6000 --label after --out experiments/results/cost_profile_64x6000.json',
    'python experiments/cost_profile.py --runs 1024 --steps 300 --label after --out experiments/results/cost_profile_1024x300.json',
    'python experiments/cost_runtime.py --runs 64 --repeats 3 --out experiments/results/cost_runtime_64.json',
    'python experiments/cost_runtime.py --runs 1024 --steps 140 --repeats 2 --out experiments/results/cost_runtime_1024.json',
    'python -m tinyjax.bench --cost_table --cases 64x6000,1024x300 --cost_items lenses --out experiments/results/cost_table_acceptance.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --plain_1=False',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --repeats 3 --plain_1=False '
    '--out experiments/results/bench_cold_r3.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_pm.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_eve.json',
    'python experiments/gc_cost.py --case 64x300 --repeats 3 --out experiments/results/gc_cost.json',
    'python -m tinyjax.bench --cost_table --cases 64x6000 --cost_items checkpoints,files,copying '
    '--repeats 2 --out experiments/results/cost_table_64x6000_items_s13.json',
    'python experiments/bare_vs_plain.py --cases 1024x300,64x6000 --repeats 3 '
    '--out experiments/results/bare_vs_plain_s13.json',
    'python experiments/cost_runtime.py --runs 64 --repeats 5 '
    '--out experiments/results/cost_runtime_64_s13.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 5 --noplain_1 '
    '--out experiments/results/bench_cold_r5_s13.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 2 --noplain_1 '
    '--out experiments/results/bench_cold_r2_s14.json',
    'python -m tinyjax.bench --cases 1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_1024x20_s14.json',
    'python experiments/cost_runtime.py --runs 64 --repeats 5 '
    '--out experiments/results/cost_runtime_64_s14.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s14.json',
    'python experiments/bare_vs_plain.py --cases 1024x300,64x6000 --repeats 3 '
    '--out experiments/results/bare_vs_plain_s14.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s14.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s15.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s15.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json '
    'experiments/results/bench_cold_r3_s15.json experiments/results/bench_cold_r3b_s15.json',
    'python experiments/cost_profile.py --runs 64 --steps 300',
    'python -m tinyjax.bench --cases 1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_1024x20_s15.json',
    'python experiments/bare_vs_plain.py --cases 1024x300,64x6000 --repeats 3 '
    '--out experiments/results/bare_vs_plain_s15.json',
    'python experiments/cost_phases.py --runs 64 --steps 6000 --repeats 3 --chunks_alone '
    '--out experiments/results/cost_phases_64x6000.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s16.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s16.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json '
    'experiments/results/bench_cold_r3_s15.json experiments/results/bench_cold_r3b_s15.json '
    'experiments/results/bench_cold_r3_s16.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s17.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s17.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json '
    'experiments/results/bench_cold_r3_s15.json experiments/results/bench_cold_r3b_s15.json '
    'experiments/results/bench_cold_r3_s16.json experiments/results/bench_cold_r3_s17.json',
    'python experiments/cost_phases.py --runs 1024 --steps 300 --repeats 2 --chunks_alone '
    '--out experiments/results/cost_phases_1024x300.json',
    'python experiments/cost_phases.py --runs 64 --steps 6000 --repeats 2 '
    '--out experiments/results/cost_phases_64x6000_by_phase.json',
    'python experiments/cost_runtime.py --runs 1024 --steps 140 --repeats 3 '
    '--out experiments/results/cost_runtime_1024_s17.json',
    'python -m tinyjax.bench --cost_table --cases 1024x300 --cost_items checkpoints,files '
    '--repeats 2 --out experiments/results/cost_table_1024x300_s17.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s18.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s18.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json '
    'experiments/results/bench_cold_r3_s15.json experiments/results/bench_cold_r3b_s15.json '
    'experiments/results/bench_cold_r3_s16.json experiments/results/bench_cold_r3_s17.json '
    'experiments/results/bench_cold_r3_s18.json',
    'python experiments/cost_phases.py --runs 64 --steps 6000 --repeats 2 --chunks_alone '
    '--out experiments/results/cost_phases_64x6000_chunks_alone.json',
    'python -m tinyjax.bench --cases 1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_1024x20_s18.json',
    'python -m tinyjax.bench --cases 64x6000,1024x300 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s19.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled_s19.json '
    'experiments/results/bench_cold_r2_s14.json experiments/results/bench_cold_r3_s14.json '
    'experiments/results/bench_cold_r3_s15.json experiments/results/bench_cold_r3b_s15.json '
    'experiments/results/bench_cold_r3_s16.json experiments/results/bench_cold_r3_s17.json '
    'experiments/results/bench_cold_r3_s18.json experiments/results/bench_cold_r3_s19.json '
    'experiments/results/bench_cold_r3b_s19.json',
    'python experiments/cost_profile.py --runs 64 --steps 20 --label a '
    '--out experiments/results/cost_profile_64x20_s19.json',
    'python experiments/bench_pool.py --out experiments/results/bench_pooled.json '
    + ' '.join(f'experiments/results/bench_cold_{r}.json'
               for r in ('r3', 'r3b', 'r3_pm', 'r3_pm2', 'r3_eve', 'r3_eve2', 'r3_eve3', 'r3_s12',
                         'r5_s13', 'r3_s13', 'r3_s13b')),
    'python -m tinyjax.bench --cases 64x6000,1024x300,1024x20 --repeats 3 --noplain_1 '
    '--out experiments/results/bench_cold_r3_s13.json',
    'python -m tinyjax.bench --cost_table --cases 64x6000 --repeats 3 --cost_items lenses '
    '--out experiments/results/cost_table_64x6000_r3.json',
    'python experiments/cost_runtime.py --runs 64 --repeats 3',
    'python experiments/bare_vs_plain.py --cases 1024x300,64x6000 --repeats 3 '
    '--out experiments/results/bare_vs_plain.json',
    'python -m tinyjax.bench --suite accelerator',
    'python -m tinyjax.export_onnx --workdir runs/guppylm_full1k --out guppy.onnx --quantize uint8',
    'python -m tinyjax.run --config configs/grokking_small.py:llc --workdir runs/grokking_llc',
    'python -m tinyjax.run --config configs/grokking_small.py:sweep --workdir runs/grok',
    'python -m tinyjax.run --config configs/guppylm.py --workdir runs/guppylm_full1k --config.train.steps=1000',
    'python -m tinyjax.run --config configs/induction.py:sweep --workdir runs/induction',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=1024 --config.train.steps=20',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=1024 --config.train.steps=300 --workdir runs/tb1024',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=64 --config.checkpoint.log_spaced=False --config.lenses.every=0 --workdir runs/timmy64',
    'python experiments/generation_cost.py --seeds 1024 --steps 20',
    'python experiments/grokking_llc.py',
    'python experiments/heldout_colour.py',
    'python experiments/heldout_colour.py --conditions baseline,tied --out_name heldout_colour_outputs',
    'python experiments/heldout_colour.py --steps 20000 --conditions tied,colours20,tied20 --out_name heldout_colour_20k',
    'python experiments/induction_study.py',
    'python experiments/lens_overhead.py --repeats 5',
    'python experiments/lens_overhead.py --repeats 5 --out experiments/results/lens_overhead.json',
    'python experiments/llc_calibration.py --workdir W --name grokking_small',
    'python experiments/pillmish_results.py',
    'python experiments/time_steps.py configs/guppylm.py --steps 20 --chunk 20 --log_every 10',
    'python experiments/guppylm_results.py',
    'python experiments/time_steps.py configs/timmy.py --seeds 64 --chunk 1000 --steps 2000',
    'python experiments/timmy_mechanism.py',
    'python experiments/torch_reference.py',
    'python experiments/torch_reference.py --systems guppylm --first_step= --guppy_buckets 40,48 --out experiments/results/torch_reference_guppy_buckets.json',
    'python experiments/step_ab.py',
    'python experiments/step_parts.py',
    'python -m tinyjax.bench --cost_table --cases 64x300 --repeats 2 --out experiments/results/cost_table_64x300.json',
    'python experiments/first_step.py --configs tiny_llm --repeats 3 --out experiments/results/first_step_tiny_llm_s6.json',
    'python experiments/guppy_lengths.py',
    'python experiments/step_ab.py --variants base,ynn_none --repeats 9',
    'python experiments/first_step.py',
    'python experiments/task_cache.py',
    'python experiments/first_step.py --table experiments/results/first_step.json',
    'python experiments/first_step.py --compile_parts tiny_llm --repeats 2 --out experiments/results/first_step_compile_parts_under_load.json',
    'python experiments/bench_loss_divergence.py',
    'python experiments/timmy_run.py',
    'python experiments/timmy_sweep.py',
    'python experiments/suite_time.py --label idle',
    'python experiments/tiny_llm_results.py',
    'tensorboard --logdir WORKDIR',
    # Exports, your own experiment, Lenses II.
    'pip install -r requirements-interop.txt',
    'python -m tinyjax.chat --history',
    'python -m tinyjax.export --format hf --workdir runs/guppy --out exports/guppy_hf',
    'python -m tinyjax.export --format hf --workdir runs/guppylm --out exports/guppylm_hf',
    'python -m tinyjax.export --format transformer_lens --workdir runs/timmy --every_checkpoint --out exports/timmy',
    'python -m tinyjax.export --format transformer_lens --workdir runs/timmy_sweep --run lr=0.1/seed=3 --every_checkpoint --out exports/timmy_traj',
    'python -m tinyjax.export --format transformer_lens --workdir runs/tiny_llm --out exports/tiny_llm_tl',
    'python -m tinyjax.generate',
    'python -m tinyjax.run',
    'python -m tinyjax.run --config configs/grokking_small.py:lenses2 --config.sweep.seeds=8 --config.lenses.llc_parts="()" --config.lenses.every=100 --workdir runs/grok8 --noprogress',
    'python examples/sparse_parity/study.py',
    'python experiments/essential_dynamics.py --workdir WORKDIR [--milestone breakthrough_step]',
    'python experiments/essential_dynamics.py --workdir runs/timmy_lenses2_32 --milestone breakthrough_step --name timmy32',
    'python -m tinyjax.run --config configs/induction.py:essential --workdir runs/induction_ed --noprogress',
    'python experiments/essential_dynamics.py --workdir runs/induction_ed --milestone induction_step --also repeat_learned_step --split test --rows 16 --stride 5 --name induction',
    'python experiments/export_parity.py',
    'python experiments/lenses_ii_cost.py',
    'python experiments/lenses_ii_cost.py --runs 64 --repeats 1',
    'python experiments/lenses_ii_grokking.py --workdir runs/grok8',
    'python -m tinyjax.run --config configs/grokking_small.py:lenses2 --config.sweep.seeds=16 --config.lenses.llc_parts="()" --config.lenses.every=100 --config.checkpoint.every=50 --workdir runs/grok16 --noprogress',
    'python experiments/lenses_ii_grokking.py --workdir runs/grok16 --name lenses_ii_grokking16',
    'python -m tinyjax.run --config configs/timmy.py:lenses2 --config.sweep.seeds=32 --workdir runs/timmy_lenses2_32 --noprogress',
    'python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=64 --config.checkpoint.log_spaced=False --config.checkpoint.every=0 --workdir W --noprogress',
    'python experiments/lenses_ii_timmy.py --workdir runs/timmy_lenses2_32 --name lenses_ii_timmy32',
    'python -m tinyjax.bench --cost_table --cases 64x300 --out experiments/results/cost_table_64x300.json',
    'python -m tinyjax.lens',
    'python experiments/essential_dynamics_grokking.py --workdir runs/grok16',
    'python -m tinyjax.lens --workdir runs/grok16 --out runs/grok16_llc_parts --config.lenses.llc_parts=modules --config.lenses.sharpness_precond=0',
    'python experiments/lenses_ii_grokking.py --workdir runs/grok16 --llc_dir runs/grok16_llc_parts --name lenses_ii_grokking_llc_parts',
    'python -m tinyjax.lens --workdir runs/grok16 --out runs/grok16_llc_parts_4chains --steps 100,1000,1400,1800 --config.lenses.llc_parts=modules --config.lenses.sharpness_precond=0 --config.lenses.llc_chains=4',
    'python experiments/lenses_ii_grokking.py --workdir runs/grok16 --llc_dir runs/grok16_llc_parts --chains_dir runs/grok16_llc_parts_4chains --name lenses_ii_grokking_llc_parts',
    'python -m tinyjax.lens --workdir runs/grok --config.lenses.llc_parts=modules',
    'python -m tinyjax.lens --workdir runs/grok --out runs/grok_llc --steps 100,900,1800 --config.lenses.llc_parts=modules --config.lenses.sharpness_precond=0',
    'python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -r requirements-export.txt -r requirements-interop.txt',
}

TINYJAX_FLAGS = {'help', 'helpfull', 'helpshort'}


def _defined_flags(source_path):
  src = _read(source_path)
  names = set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", src))
  names |= set(re.findall(r"add_argument\(\s*'--(\w+)'", src))
  if 'cli.' in src or 'from tinyjax import cli' in src:
    names |= set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", _read(os.path.join(ROOT, 'tinyjax', 'cli.py'))))
  return names


def _python_parts(command):
  """The `python -m MOD ...` / `python SCRIPT ...` invocations inside a command line."""
  parts, words = [], shlex.split(command.replace('$I', '0'))
  for k, w in enumerate(words):
    if w in ('python', 'python3'):
      end = next((j for j in range(k + 1, len(words)) if words[j] in ('&&', '|', ';')), len(words))
      parts.append(words[k + 1:end])
    elif w == '--command':  # gcloud's remote command
      parts += _python_parts(words[k + 1])
  return parts


def _check_statically(command):
  for args in _python_parts(command):
    if args[:2] == ['-m', 'venv'] or args[:2] == ['-m', 'pytest']:
      continue
    if args[0] == '-m':
      mod, rest = args[1], args[2:]
      base = os.path.join(ROOT, *mod.split('.'))
      source = base + '.py' if os.path.exists(base + '.py') else os.path.join(base, '__main__.py')
    else:
      source, rest = os.path.join(ROOT, args[0]), args[1:]
    assert os.path.exists(source), f'{command}: no {_rel(source)}'
    known = _defined_flags(source) | TINYJAX_FLAGS
    for k, w in enumerate(rest):
      if not w.startswith('--'):
        continue
      name, _, value = w[2:].partition('=')
      if name == 'config':
        path, _, variant = (value or rest[k + 1]).partition(':')
        _load_config(path, variant or None)
      elif name.startswith('config.') and not any(
          a == '--config' or a.startswith('--config=') for a in rest):  # tinyjax.lens: lenses.*
        from tinyjax import lenses
        assert name.split('.')[1] == 'lenses' and name.split('.')[2] in lenses.DEFAULTS, \
            f'{command}: no lens field {name}'
      elif name.startswith('config.'):
        cfg_arg = next(a for j, a in enumerate(rest) if rest[j - 1] == '--config' or a.startswith('--config='))
        path, _, variant = cfg_arg.replace('--config=', '').partition(':')
        node = _load_config(path, variant or None)
        for field in name.split('.')[1:]:
          assert field in node, f'{command}: no config field {name}'
          node = node[field]
      else:
        assert name in known or (name.startswith('no') and name[2:] in known), \
            f'{command}: {w} is not a flag of {_rel(source)}'
  for req in re.findall(r'-r (\S+)', command):
    assert os.path.exists(os.path.join(ROOT, req)), f'{command}: no {req}'


def _load_config(path, variant):
  import importlib.util
  spec = importlib.util.spec_from_file_location('cfg_' + os.path.basename(path)[:-3], os.path.join(ROOT, path))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(variant)


def test_every_command_is_smoke_run_or_on_the_checked_list_of_long_ones():
  commands = set(_commands())
  assert not commands - set(SMOKE) - LONG, sorted(commands - set(SMOKE) - LONG)
  # The lists name only commands the docs still have.
  assert not (set(SMOKE) | LONG) - commands, sorted((set(SMOKE) | LONG) - commands)


@pytest.mark.parametrize('command', sorted(set(SMOKE) | LONG))
def test_every_command_is_well_formed(command):
  """Modules, scripts, flags, configs, variants and config fields exist."""
  _check_statically(command)


def test_the_static_check_catches_a_wrong_command():
  for bad in ('python -m tinyjax.run --config configs/timmy.py --config.train.stepz=3 --workdir w',
              'python -m tinyjax.run --config configs/timmy.py:nope --workdir w',
              'python -m tinyjax.generate --workdir w --promt blue',
              'python experiments/nope.py'):
    with pytest.raises((AssertionError, ValueError)):
      _check_statically(bad)


def test_the_short_commands_run_as_written(tmp_path):
  """Also the CLI's end to end check (train, then generate from the workdir)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = []
  for command in SMOKE:
    args = shlex.split(command.replace('runs/timmy_smoke', str(tmp_path / 'timmy_smoke')))
    args[0] = sys.executable
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (command, r.stderr[-2000:])
    out.append(r.stdout)
  run, gen = out
  assert '6,560 parameters' in run and "generate 'violet'" in run, run
  w = tmp_path / 'timmy_smoke'
  assert (w / 'seed=0' / 'metrics.jsonl').exists()
  # generate printed the run's own greedy continuation of 'blue', trained
  # colours (the smoke run is on the plateau).
  summary = json.loads((w / 'summary.json').read_text())
  assert gen.rstrip('\n') == summary['runs'][0]['generations']['blue']
  from configs import timmy
  words = gen.split()
  assert words and set(words) <= set(timmy.COLOURS), gen
