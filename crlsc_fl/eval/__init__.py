"""Evaluation of frozen encoders: feature extraction and kNN accuracy."""
