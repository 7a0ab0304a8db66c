"""The model (VGG19 with attention, Flax linen) and its PyTorch parameter names."""
