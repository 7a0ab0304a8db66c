"""The paper's (VGG-att3)-concat-pc for 300 epochs, with the reference recipe's optimiser.

    python train.py --config configs/paper_att3_concat_pc.py --workdir runs/paper_att3_concat_pc \
        --config.data_dir=../shared/tensorflow_datasets

Source: Jetley et al., ICLR 2018: attention over three intermediate layers, parametrised
compatibility, softmax normalisation, concatenated descriptors, 300 epochs. Here, as in the SaoYan
port: l1, l2, l3 taken before pooling, one u per layer.
Published (the paper, official CIFAR-100 test split): top-1 error 30.62 (VGG) -> 22.97
((VGG-att3)-concat-pc).
Our choices, not the paper's: the reference layout (b2 = 2 convs, no dropout), kaiming init, and
the reference recipe's optimiser with its boundaries scaled from 100 to 300 epochs: SGD momentum
0.9, weight decay 5e-5 (coupled), lr 0.1 x0.1 at epochs 150/210/270, batch 64, crop+flip. (The
paper's VGG code base, szagoruyko/cifar.torch, defaults to batch 128, lr 1 halved every 25
epochs, weight decay 5e-4; saoyan_att_before.py runs that schedule at lr 0.1, 3 passes an epoch.)
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()
  config.num_epochs = 300
  config.lr_boundaries_epochs = (150, 210, 270)
  return config
