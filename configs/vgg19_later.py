"""VGG19 (no attention) with the reference author's later recipe, as its code had it.

    python train.py --config configs/vgg19_later.py --workdir runs/vgg19_later \
        --config.data_dir=../shared/tensorflow_datasets

Recipe of the code that produced the later rows (iversonicter/Learn-to-pay-attention, main.py at
399c726/845f1d4, model/vgg19.py at 845f1d4; rows published at 18d4f1f and fd6aad8): b2 = 3 convs,
SGD momentum 0.9, weight decay 5e-5 (coupled, as torch.optim.SGD), lr 0.1 x0.1 at epochs
50/70/90, batch 128 (main.py's default; its README still says "Batch size 64"), 100 epochs,
crop+flip, kaiming init. Block b2 became 2 convs only at 51f700d, 13 months after these rows.
Published (PyTorch, official CIFAR-100 test split, 3 runs, best epoch on the test set): top-1 /
top-5 error 26.2/7.65, 26.84/7.53, 27.39/7.47. That code hard-coded `attention = True`: the
repository cannot confirm that these "VGG19" rows had no attention.
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.attention = False
  config.model.b2_convs = 3
  config.batch_size = 128
  config.weight_decay = 5e-5
  return config
