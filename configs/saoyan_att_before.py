"""The SaoYan PyTorch port's VGG-att3, attention before the max-pools (AttnVGG_before).

    python train.py --config configs/saoyan_att_before.py --workdir runs/saoyan_att_before \
        --config.data_dir=../shared/tensorflow_datasets

Source: github.com/SaoYan/LearnToPayAttention, train.py --attn_mode before --normalize_attn.
Model: (VGG-att3)-concat-pc with softmax, one u per layer, b2 = 2 convs, attention on
l1, l2, l3 taken before pooling (l1 32x32, l2 16x16, l3 8x8), xavier-uniform init (gain sqrt(2),
BN scale ~ U(0, 1)).
Recipe: SGD momentum 0.9, weight decay 5e-4 (coupled), batch 128, lr 0.1 halved every 25
"epochs", 300 "epochs" of 3 passes over the training set each (900 passes), crop+flip,
normalised by SaoYan's CIFAR-100 mean/std, (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761).
Published (SaoYan's README, official CIFAR-100 test split): top-1 error 22.62 (after
pooling: 22.92; the paper's (VGG-att3)-concat-pc: 22.97).
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()  # the same model: softmax, separate u, pc, concat
  config.model.init_scheme = "xavier"
  config.data_mean = (0.5071, 0.4867, 0.4408)  # SaoYan's train.py constants
  config.data_std = (0.2675, 0.2565, 0.2761)
  config.batch_size = 128
  config.weight_decay = 5e-4
  config.learning_rate = 0.1
  config.lr_schedule = "step"
  config.lr_step_epochs = 25
  config.lr_decay = 0.5
  config.num_epochs = 300
  config.passes_per_epoch = 3
  return config
