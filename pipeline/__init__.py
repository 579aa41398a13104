"""Data, training, evaluation and (later) export and the Prefect flow, as plain functions."""
