"""Every config field with its default (see `ltpa_jax.config.fields`), for config files:

    from ltpa_jax import default_config

    def get_config():
      config = default_config.get_config()
      ...
"""

from ltpa_jax.config.defaults import get_config
from ltpa_jax.config.files import configs_dir, find, from_file, names, sibling

__all__ = ["configs_dir", "find", "from_file", "get_config", "names", "sibling"]
