"""The network: its configuration, layers, towers, the Flax dual encoder, its PyTorch twin and the
backends that run them."""
