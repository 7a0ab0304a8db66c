"""The config of every field's default (`fields.FIELDS`: the reference recipe, VGG19-att, softmax,
separate u).

    python train.py --config configs/default.py --workdir runs/default

The configs in configs/ start from this one and change a few fields (see configs/vgg19.py and
configs/vgg19_att.py); `validation` takes its fields and types from here.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from ltpa_jax.config import fields


def get_config() -> ml_collections.ConfigDict:
  """A new config holding each field of `fields.FIELDS` at its default."""
  config = ml_collections.ConfigDict()
  for field in fields.FIELDS:
    *sections, name = field.path.split(".")
    node = config
    for section in sections:
      if section not in node:
        node[section] = ml_collections.ConfigDict()
      node = node[section]
    node[name] = placeholder(field.kind) if field.kind else field.default
  return config
