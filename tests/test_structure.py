"""The package's shape: the host loop in short functions, no import cycle."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, 'tinyjax')
MAX_LINES = 80  # a function of train.py or loop.py (aim: 60)


def _modules() -> dict[str, str]:
  """Every module of tinyjax: dotted name -> path."""
  out = {}
  for d, _, files in os.walk(PKG):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(d, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
  return out


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
  """module -> the tinyjax modules it imports, at module level or inside a
  function (`from tinyjax import x` counts x when x is a module, else tinyjax)."""
  graph = {}
  for name, path in modules.items():
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    deps = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names if a.name in modules)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
          parts = package.split('.')[:len(package.split('.')) - node.level + 1]
          base = '.'.join(parts + ([base] if base else []))
        for a in node.names:
          deps.add(f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base)
    graph[name] = {d for d in deps if d in modules and d != name}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  out, state, stack = [], {}, []

  def visit(u):
    state[u] = 'open'
    stack.append(u)
    for v in sorted(graph[u]):
      if state.get(v) == 'open':
        out.append(stack[stack.index(v):] + [v])
      elif v not in state:
        visit(v)
    stack.pop()
    state[u] = 'done'
  for u in sorted(graph):
    if u not in state:
      visit(u)
  return out


def long_functions(path: str, limit: int) -> list[str]:
  tree = ast.parse(open(path).read())
  return [f'{n.name}: {n.end_lineno - n.lineno + 1} lines' for n in ast.walk(tree)
          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
          and n.end_lineno - n.lineno + 1 > limit]


def test_no_import_cycle():
  modules = _modules()
  graph = import_graph(modules)
  assert graph['tinyjax.program'] >= {'tinyjax.generation', 'tinyjax.lens_plumbing'}
  assert cycles(graph) == []


def test_cycle_check_finds_one():
  """The check above can fail: a lazy import back makes a cycle."""
  assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c', 'a']]
  assert cycles({'a': {'b'}, 'b': set()}) == []


def test_host_loop_functions_are_short():
  for f in ('train.py', 'loop.py'):
    assert long_functions(os.path.join(PKG, f), MAX_LINES) == [], f
  assert long_functions(os.path.join(PKG, 'program.py'), 30) != []  # the check sees functions
