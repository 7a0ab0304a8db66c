"""VGG19-att with grid attention gates (Schlemper et al.), otherwise configs/vgg19_att.py.

    python train.py --config configs/vgg19_att_grid.py --workdir runs/vgg19_att_grid \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, each by its own additive gate
c = phi(relu(W_l l_s + W_g g)) with 256 hidden channels (l1 projected to 512 first, as in
vgg19_att), SIGMOID normalisation (g_s = spatial mean of a * l_s), concatenated descriptors.
Recipe as vgg19_att (the reference table's): b2 = 3 convs, SGD momentum 0.9, weight decay 1e-4
(coupled), lr 0.1 x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
No published result: neither the paper nor the reference code trained this model, so there is no
number to hold it against (vgg19_att's is the nearest).
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att")
  config.model.attention_type = "grid"
  config.model.attn_features = 256
  config.model.shared_u = False  # grid gates are per layer
  return config
