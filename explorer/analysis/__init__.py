"""Per-layer analysis: neighbour graphs, the probe, scores, projections and similarity between layers."""
