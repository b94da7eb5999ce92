"""Bottleneck Explorer: what the intermediate layers of pretrained image networks make of your images."""

__version__ = "0.2.0"
