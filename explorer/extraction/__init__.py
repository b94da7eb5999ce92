"""Feature extraction and its store: pooling, the one-pass extractor, the local and Ray backends."""
