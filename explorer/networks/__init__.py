"""Models and layers: weights, the torchvision registry, layer discovery, preprocessing and the traced graph."""
