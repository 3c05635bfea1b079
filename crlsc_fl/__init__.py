"""crlsc-fl: CRLSC (contrastive, knowledge-base guided semantic communication) on Flower."""

__version__ = "0.1.0"
