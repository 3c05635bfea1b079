"""Batched tensor augmentations."""

from crlsc_fl.augment.simclr import SimCLRAugment

__all__ = ["SimCLRAugment"]
