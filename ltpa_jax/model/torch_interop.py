"""PyTorch state_dicts of the reference models <-> this project's Flax variables.

A state_dict here maps torch names to numpy arrays (`load_pth` and `save_pth` read and write .pth
files; only they import torch, lazily). Two naming schemes, with `{k}` = 3 in blocks 1-5
([Conv, BN, ReLU] per conv) and 4 in block 6 ([Conv, BN, ReLU, MaxPool] per conv):

  Flax (params, batch_stats)     "reference"                          "saoyan" (the SaoYan port)
  block{s}/conv{i}/kernel, bias  conv_block{s}.{k*i}.weight, .bias    conv_block{s}.op.{k*i}.*
  block{s}/bn{i}/scale, bias     conv_block{s}.{k*i+1}.weight, .bias  conv_block{s}.op.{k*i+1}.*
  block{s}/bn{i}/mean, var       conv_block{s}.{k*i+1}.running_mean, .running_var (same modules)
  dense/kernel, bias (g)         adaptive_conv.weight, .bias          dense.weight, .bias
  projector/kernel               projector.weight                     projector.op.weight
  u/kernel (shared u)            op.weight                            attn.op.weight
  attention{s}/u/kernel          op{s}.weight                         attn{s}.op.weight
  attention{s}/W_l/kernel (grid) grid{s}.W_l.weight                   attn{s}.W_l.weight
  attention{s}/W_g/kernel (grid) grid{s}.W_g.weight                   attn{s}.W_g.weight
  attention{s}/phi/kernel, bias  grid{s}.phi.weight, .bias            attn{s}.phi.weight, .bias
  classifier/kernel, bias        classifier.weight, .bias             classify.weight, .bias
  classifier{s}/* (indep)        classifier{s}.*                      classify{s}.*

Layouts: conv kernels torch (O, I, H, W) <-> Flax (H, W, I, O), 1x1 convs included; Linear
weights torch (out, in) <-> Flax (in, out); vectors as they are. The classifier's input is
concat(g_1, g_2, g_3) of channel vectors in both, so it needs no reordering. BatchNorm's
`num_batches_tracked` is ignored on import and written as 0 on export (it plays no part with
torch's momentum 0.1). DataParallel's `module.` prefixes are stripped on import. The SaoYan port
has separate u only; `attn.op` names a shared u in its naming.

Without attention (VGG19) the reference module still creates `projector` and the u's (one shared
`op`, or `op1`..`op3`) and never uses them: a full-width VGG19 (b2 = 2 convs, 100 classes) uses
19,758,756 parameters, its reference module holds 131,072 + 512 more (19,890,340) with `op`, or
131,072 + 1,536 more (19,891,364) with `op1`..`op3`. `from_torch` ignores these exact names
(shapes checked) and prints a note naming them; `to_torch` writes them as zeros (`op` if the
model's `shared_u`, else `op1`..`op3`) so that `load_state_dict(strict=True)` succeeds. The SaoYan
port creates `projector` and `attn*` only with attention: its VGG19 state_dicts have neither.
The reference code attends all three layers with pc compatibility; this project's other variants
(fewer attended layers, dp, grid gates) have no reference module, so their state_dicts hold
exactly the tensors the model uses. The grid gates' names are those of the SaoYan port's
GridAttentionBlock (W_l, W_g, phi), under `attn{s}` in its naming and `grid{s}` in the reference
naming (the port's own AttnVGG_grid is another network: it attends b3 and b4 to a g map).
A `conv_bias_free` model (no bias on the convs before BatchNorm) exports those biases as zeros
and imports them only when they are zero (a StateDictMismatchError otherwise).
"""

from __future__ import annotations

import functools
import re

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax.base import errors

SCHEMES = ("reference", "saoyan")

_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
           "var": "running_var"}
_NUM_BATCHES_TRACKED = ".num_batches_tracked"
# Axis orders: conv kernels OIHW <-> HWIO, Linear weights (out, in) <-> (in, out); else as is.
_TO_FLAX = {4: (2, 3, 1, 0), 2: (1, 0)}
_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}


class StateDictMismatchError(errors.UserError, ValueError):
  """A state_dict whose names or shapes are not those of the model."""


def torch_name(key: tuple[str, ...], scheme: str) -> str:
  """The torch name of the Flax variable at `key` = (collection, *module path, leaf)."""
  module, leaf = "/".join(key[1:-1]), key[-1]
  saoyan = _check_scheme(scheme) == "saoyan"
  if m := re.fullmatch(r"block(\d)/(conv|bn)(\d+)", module):
    index = (4 if m[1] == "6" else 3) * int(m[3]) + (m[2] == "bn")
    name = f"conv_block{m[1]}.{'op.' if saoyan else ''}{index}"
  elif m := re.fullmatch(r"attention(\d)/u", module):
    name = f"attn{m[1]}.op" if saoyan else f"op{m[1]}"
  elif m := re.fullmatch(r"attention(\d)/(W_l|W_g|phi)", module):
    name = f"{'attn' if saoyan else 'grid'}{m[1]}.{m[2]}"
  elif m := re.fullmatch(r"classifier(\d?)", module):
    name = ("classify" if saoyan else "classifier") + m[1]
  elif module == "u":
    name = "attn.op" if saoyan else "op"
  elif module == "projector":
    name = "projector.op" if saoyan else "projector"
  elif module == "dense":
    name = "dense" if saoyan else "adaptive_conv"
  else:
    raise ValueError(f"No torch name for the Flax variable {'/'.join(key)}.")
  return f"{name}.{_LEAVES[leaf]}"


def detect_scheme(state_dict) -> str:
  """The naming scheme of a state_dict, "reference" or "saoyan", from its conv block names."""
  names = [k.removeprefix("module.") for k in state_dict]
  if any(re.match(r"conv_block\d+\.op\.\d+\.", k) for k in names):
    return "saoyan"
  if any(re.match(r"conv_block\d+\.\d+\.", k) for k in names):
    return "reference"
  raise ValueError(
      "Cannot tell the naming scheme of the state_dict: no name like conv_block1.0.weight "
      f"(reference) or conv_block1.op.0.weight (saoyan); its first names: {names[:5]}. "
      "Pass the scheme explicitly if it is one of those.")


def from_torch(state_dict, model, channels: int = 3, scheme: str | None = None) -> dict:
  """Flax variables {"params", "batch_stats"} of `model` from a torch state_dict.

  `channels` is the number of input channels; `scheme` is detected when None. Raises
  StateDictMismatchError listing missing and unexpected names and shape mismatches. The reference
  module's unused tensors of a VGG19 are ignored, with a printed note.
  """
  state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
  scheme = _check_scheme(scheme or detect_scheme(state_dict))
  like = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                        jnp.zeros((1, 32, 32, channels)))
  specs = {torch_name(key, scheme): (key, spec)
           for key, spec in flax.traverse_util.flatten_dict(like).items()}
  unused = _unused_weights(model, like["params"], scheme, ("op", "op1", "op2", "op3"))
  absent = _absent_conv_biases(model, like["params"], scheme)
  flat, missing, mismatched, ignored, non_zero = {}, [], [], [], []
  for name, (key, spec) in specs.items():
    if name not in state_dict:
      missing.append(name)
      continue
    value = np.asarray(state_dict[name])
    expected = tuple(spec.shape[axis] for axis in _axes(_TO_TORCH, spec.ndim))
    if value.shape != expected:
      mismatched.append(f"{name} checkpoint {value.shape} vs model {expected}")
      continue
    flat[key] = jnp.array(value.transpose(_axes(_TO_FLAX, value.ndim)), spec.dtype)  # a copy
  for name in sorted(state_dict.keys() & unused.keys()):
    if np.shape(state_dict[name]) != unused[name]:
      mismatched.append(f"{name} checkpoint {np.shape(state_dict[name])} vs unused {unused[name]}")
    else:
      ignored.append(name)
  for name in sorted(state_dict.keys() & absent.keys()):
    if np.shape(state_dict[name]) != absent[name]:
      mismatched.append(f"{name} checkpoint {np.shape(state_dict[name])} vs {absent[name]}")
    elif np.any(state_dict[name]):
      non_zero.append(name)
  if non_zero:
    raise StateDictMismatchError(
        f"The state_dict has non-zero conv biases before BatchNorm ({', '.join(non_zero)}), "
        "which a model with model.conv_bias_free=True cannot hold: it has no such biases "
        "(BatchNorm cancels them in training, not in evaluation). Import it with "
        "model.conv_bias_free=False; train or export with the field off.")
  unexpected = sorted(k for k in state_dict if k not in specs and k not in unused
                      and k not in absent and not k.endswith(_NUM_BATCHES_TRACKED))
  if missing or unexpected or mismatched:
    problems = [f"{len(v)} {what}: {', '.join(v)}" for what, v in (
        ("missing names", sorted(missing)), ("unexpected names", unexpected),
        ("shape mismatches (torch layout)", mismatched)) if v]
    raise StateDictMismatchError(
        f"The state_dict ({scheme} naming) does not match the model: {'; '.join(problems)}. "
        "Make the model (the config's model fields, see docs/config.md; the dataset's classes "
        "and channels) describe the checkpoint, or pass the other scheme.")
  if ignored:
    print(f"Ignored {', '.join(ignored)}: the reference module creates them without attention "
          "but does not use them.")
  return flax.traverse_util.unflatten_dict(flat)


def to_torch(variables, model, scheme: str) -> dict[str, np.ndarray]:
  """The torch state_dict (numpy arrays) of `model`'s Flax variables {"params", "batch_stats"}.

  For a model without attention, the reference naming adds the reference module's unused
  `projector` and u's (`op` if `model.shared_u`, else `op1`..`op3`) as zeros; for a
  `conv_bias_free` model, the conv biases before BatchNorm as zeros.
  """
  state_dict = {}
  for key, value in flax.traverse_util.flatten_dict(
      {c: variables[c] for c in ("params", "batch_stats")}).items():
    name = torch_name(key, scheme)
    value = np.array(value)  # a copy, writable
    state_dict[name] = value.transpose(_axes(_TO_TORCH, value.ndim))
    if key[-1] == "mean":
      module = name.removesuffix(".running_mean")
      state_dict[module + _NUM_BATCHES_TRACKED] = np.zeros((), np.int64)
  params = variables["params"]
  u_names = ("op",) if model.shared_u else ("op1", "op2", "op3")
  for name, shape in _unused_weights(model, params, scheme, u_names).items():
    state_dict[name] = np.zeros(shape, params["dense"]["kernel"].dtype)
  for name, shape in _absent_conv_biases(model, params, scheme).items():
    state_dict[name] = np.zeros(shape, params["dense"]["kernel"].dtype)
  return state_dict


def load_pth(path) -> dict[str, np.ndarray]:
  """The state_dict of a .pth file holding one, raw or under the key 'state_dict' or 'model'."""
  torch = _import_torch()
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except FileNotFoundError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # torch's: OSError, pickle, zip, ...
    reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
    raise errors.UserError(f"{path} cannot be read as a PyTorch checkpoint ({reason}): it is "
                           "damaged, or not a .pth file. Save it again with "
                           "torch.save(model.state_dict(), path).") from e
  for key in ("state_dict", "model"):
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
      checkpoint = checkpoint[key]
      break
  if not isinstance(checkpoint, dict) or not all(torch.is_tensor(v) for v in checkpoint.values()):
    raise ValueError(f"{path} holds no state_dict: expected a dict of tensors, or a dict with one "
                     "under 'state_dict' or 'model'.")
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in checkpoint.items()}


def save_pth(state_dict, path) -> None:
  """Saves a state_dict of numpy arrays as a .pth file of torch tensors."""
  torch = _import_torch()
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("Reading and writing .pth files needs PyTorch: pip install torch "
                      "(the CPU build is enough).") from e
  return torch


def _unused_weights(model, params, scheme: str, u_names) -> dict[str, tuple[int, ...]]:
  """Torch shapes of the reference module's tensors that `model` does not use.

  Without attention, the reference naming's `projector` and the u's named `u_names`; else none.
  """
  if scheme == "saoyan" or model.attention:
    return {}
  g, l1 = params["dense"]["kernel"].shape[-1], params["block3"]["conv0"]["kernel"].shape[-1]
  return {"projector.weight": (g, l1, 1, 1)} | {f"{u}.weight": (1, g, 1, 1) for u in u_names}


def _absent_conv_biases(model, params, scheme: str) -> dict[str, tuple[int, ...]]:
  """Torch names and shapes of the conv biases before BatchNorm that a `conv_bias_free` model
  lacks (its reference module has them); none for other models."""
  if not model.conv_bias_free:
    return {}
  return {torch_name(("params", block, conv, "bias"), scheme): (leaves["kernel"].shape[-1],)
          for block, convs in params.items() if block.startswith("block")
          for conv, leaves in convs.items() if conv.startswith("conv")}


def _check_scheme(scheme: str) -> str:
  if scheme not in SCHEMES:
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
  return scheme


def _axes(table, ndim: int) -> tuple[int, ...]:
  return table.get(ndim, tuple(range(ndim)))
