"""Every knob of ltpa_jax, with the reference recipe's values (VGG19-att, softmax, separate u).

    python train.py --config configs/default.py --workdir runs/default

The config, each field documented, is `ltpa_jax/default_config.py` (installed with the package).
Other configs start from it and change a few fields; see vgg19.py and vgg19_att.py.
"""

from ltpa_jax.default_config import get_config  # pylint: disable=unused-import
