"""Contrastive losses."""

from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.loss.ntxent_loss import NTXentLoss

__all__ = ["DCLLoss", "NTXentLoss"]
