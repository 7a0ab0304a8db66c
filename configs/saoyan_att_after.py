"""The SaoYan PyTorch port's VGG-att3, attention after the max-pools (AttnVGG_after).

    python train.py --config configs/saoyan_att_after.py --workdir runs/saoyan_att_after \
        --config.data_dir=../shared/tensorflow_datasets

Source: github.com/SaoYan/LearnToPayAttention, train.py --attn_mode after --normalize_attn.
Model: (VGG-att3)-concat-pc with softmax, one u per layer, b2 = 2 convs, attention on
l1, l2, l3 taken after pooling (l1 16x16, l2 8x8, l3 4x4), xavier-uniform init (gain sqrt(2),
BN scale ~ U(0, 1)).
Recipe: SGD momentum 0.9, weight decay 5e-4 (coupled), batch 128, lr 0.1 halved every 25
"epochs", 300 "epochs" of 3 passes over the training set each (900 passes), crop+flip.
Published (SaoYan's README, official CIFAR-100 test split): top-1 error 22.92 (before
pooling: 22.62; the paper's (VGG-att3)-concat-pc: 22.97).
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "saoyan_att_before")
  config.model.attention_position = "after"
  return config
