"""Describe the machine a benchmark ran on (lives in pipeline/, shared with the experiments)."""

from pipeline.machine import describe

__all__ = ["describe"]
