"""Stage 2 of CRLSC (paper sec. 3.2, 4.2-4.3): task decoders on frozen device encoders.

- probes (linear / 3-layer MLP) on cached frozen features: :func:`train_probe`;
- the VQ-VAE semantic-communication link of eq. (4) over a digital channel:
  :class:`SemanticLink`, :func:`train_decoder`, :func:`evaluate_link`, and
  :func:`train_device_decoder` for a Flower client;
- the report CLI: ``python -m crlsc_fl.stage2 --help``.
"""

from crlsc_fl.stage2.channels import CHANNELS, Channel, build_channel
from crlsc_fl.stage2.codebook import VectorQuantizer, bits_to_indices, indices_to_bits
from crlsc_fl.stage2.decoder import ReconstructionDecoder
from crlsc_fl.stage2.features import cached_features, extract_features, load_frozen_encoder
from crlsc_fl.stage2.link import (
    LinkConfig,
    SemanticLink,
    evaluate_link,
    load_link,
    save_link,
    train_decoder,
    train_device_decoder,
)
from crlsc_fl.stage2.lowlight import darken
from crlsc_fl.stage2.probes import PROBES, ProbeConfig, ProbeResult, train_probe

__all__ = [
    "CHANNELS", "Channel", "LinkConfig", "PROBES", "ProbeConfig", "ProbeResult", "ReconstructionDecoder",
    "SemanticLink", "VectorQuantizer", "bits_to_indices", "build_channel", "cached_features", "darken",
    "evaluate_link", "extract_features", "indices_to_bits", "load_frozen_encoder", "load_link", "save_link",
    "train_decoder", "train_device_decoder", "train_probe",
]
