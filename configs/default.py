"""Every knob of ltpa_jax, with the reference recipe's values (VGG19-att, softmax, separate u).

    python train.py --config configs/default.py --workdir runs/default

Every field, with its default and meaning, is declared in `ltpa_jax/config/fields.py` (listed in
docs/config.md). Other configs start from it and change a few fields; see vgg19.py and vgg19_att.py.
"""

from ltpa_jax.default_config import get_config  # pylint: disable=unused-import
