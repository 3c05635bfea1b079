"""Evaluation of frozen encoders: feature extraction and kNN accuracy; statistics over devices."""
