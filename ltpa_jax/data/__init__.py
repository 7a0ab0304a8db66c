"""Datasets: TFDS reading and offline preparation, image files, augmentation and normalisation."""
