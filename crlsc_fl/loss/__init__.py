"""Contrastive losses."""

from crlsc_fl.loss.anchor_alignment_loss import AnchorAlignmentLoss
from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.loss.ntxent_loss import NTXentLoss

__all__ = ["AnchorAlignmentLoss", "DCLLoss", "NTXentLoss"]
