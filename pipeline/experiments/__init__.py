"""Experiments that measure what the product is for (balancing skewed datasets)."""
