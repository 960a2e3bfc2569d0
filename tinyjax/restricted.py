"""Restricted local learning coefficient: the LLC of one part of the model
with the rest held at w* (devinterp's restricted LLC, its PR #77: a boolean
mask over the parameters; SGLD moves only the masked ones).

A part is a 0/1 mask shaped like the parameters. The masks of every part are
stacked on a leading parts axis and the LLC (tinyjax.lenses.llc with `mask`)
is vmapped over it: every part of every run is one compiled estimate.

Parts (config `lenses.llc_parts`, a tuple of):
  'layers'    layer<l>: every parameter of block l
  'heads'     layer<l>/head<h>: head h's columns of W_Q, W_K, W_V (and their
              biases) and its rows of W_O
  'modules'   embed, pos_embed, layer<l>/attn, layer<l>/mlp, unembed (those
              the model has; norms without parameters have none)
  'NAME=P1+P2'  a named group: every parameter whose dotted path (e.g.
              blocks.0.attn.v.kernel) starts with one of the prefixes
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import lenses as lenses_lib
from tinyjax.tasks import ConfigError

KINDS = ('layers', 'heads', 'modules')


def _dotted(path) -> str:
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', ''))) for k in path
                  if hasattr(k, 'key') or hasattr(k, 'idx'))


def paths(params) -> list[tuple[str, tuple]]:
  """(dotted path, shape) of every parameter array, in leaf order."""
  return [(_dotted(p), tuple(x.shape)) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]]


def _mask(params, fn):
  """A 0/1 float32 mask like params; fn(dotted path, shape) -> ndarray or bool."""
  def one(p, x):
    m = fn(_dotted(p), tuple(x.shape))
    return np.broadcast_to(np.asarray(m, np.float32), x.shape).copy()
  return jax.tree_util.tree_map_with_path(one, params)


def _head(path, shape, layer, h, n_heads):
  """Head h of `layer`'s slice of a parameter (zeros elsewhere)."""
  m = np.zeros(shape, np.float32)
  pre = f'blocks.{layer}.attn.'
  if not path.startswith(pre):
    return m
  d_out = shape[-1]
  k = d_out // n_heads
  name = path[len(pre):]
  if name.split('.')[0] in ('q', 'k', 'v'):        # kernel [D, H*K], bias [H*K]: columns
    m[..., h * k:(h + 1) * k] = 1.0
  elif name == 'o.kernel':                          # [H*K, D]: rows
    k = shape[0] // n_heads
    m[h * k:(h + 1) * k] = 1.0
  return m


def parts(params, specs, n_layers: int, n_heads: int) -> list[tuple[str, object]]:
  """[(name, mask)] of the parts that `specs` (lenses.llc_parts) names."""
  out = []
  names = [p for p, _ in paths(params)]
  for spec in specs:
    if spec == 'layers':
      for l in range(n_layers):
        out.append((f'layer{l}', _mask(params, lambda p, s, l=l: p.startswith(f'blocks.{l}.'))))
    elif spec == 'heads':
      for l in range(n_layers):
        for h in range(n_heads):
          out.append((f'layer{l}/head{h}', _mask(
              params, lambda p, s, l=l, h=h: _head(p, s, l, h, n_heads))))
    elif spec == 'modules':
      groups = [('embed', 'embed.'), ('pos_embed', 'pos_embed')]
      for l in range(n_layers):
        groups += [(f'layer{l}/attn', f'blocks.{l}.attn.'), (f'layer{l}/mlp', f'blocks.{l}.mlp.')]
      groups += [('unembed', 'unembed.')]
      for name, pre in groups:
        if any(p.startswith(pre) for p in names):
          out.append((name, _mask(params, lambda p, s, pre=pre: p.startswith(pre))))
    elif isinstance(spec, str) and '=' in spec:
      name, prefixes = spec.split('=', 1)
      prefixes = tuple(x for x in prefixes.split('+') if x)
      if not name or not prefixes or not any(p.startswith(prefixes) for p in names):
        raise ConfigError(f'lenses.llc_parts: {spec!r} names no parameter; use NAME=PREFIX+PREFIX '
                          f'with dotted paths such as {names[0]!r}')
      out.append((name, _mask(params, lambda p, s, pre=prefixes: p.startswith(pre))))
    else:
      raise ConfigError(f'lenses.llc_parts: {spec!r} is not allowed; use {list(KINDS)} or '
                        "'NAME=PREFIX+PREFIX' (dotted parameter paths)")
  return out


def stack(masks):
  """Masks [(name, tree)] -> (names, one tree with a leading parts axis)."""
  return [n for n, _ in masks], jax.tree.map(lambda *xs: np.stack(xs), *[m for _, m in masks])


def llc_parts(loss_fn, params, batch_fn, key, names, masks_P, **sgld):
  """The restricted LLC of every part (one vmapped estimate; the same key,
  so the parts share their minibatches and init loss). Returns
  {'llc_part/<name>', 'llc_part_std/<name>', 'llc_part_below/<name>'}."""
  est = jax.vmap(lambda m: lenses_lib.llc(loss_fn, params, batch_fn, key, mask=m, **sgld))(
      jax.tree.map(jnp.asarray, masks_P))
  out = {}
  for i, name in enumerate(names):
    out[f'llc_part/{name}'] = est['llc'][i]
    out[f'llc_part_std/{name}'] = est['llc_std'][i]
    out[f'llc_part_below/{name}'] = est['llc_below'][i]
  return out
