"""The VQ-VAE codebook of the semantic link (paper sec. 3.2, eq. 4).

The frozen encoder's map z_e(x) of shape (B, C, h, w) holds h*w vectors of C values. Each
vector is split into ``groups`` sub-vectors of C / groups values (product quantisation, as
the paper does for its knowledge base; ``groups=1`` is the plain VQ-VAE), and every
sub-vector is replaced by the index of its nearest code (Euclidean distance) in that
group's codebook of ``num_codes`` entries. Those indices, ceil(log2 K) bits each, are what
crosses the channel; the receiver looks the vectors up again to form z_q(x).

Training (our choice, documented): the codes start from a few k-means iterations on
encoder vectors (so no code starts dead), then learn by gradient descent on the codebook
term ||sg[z_e(x)] - e||^2 of eq. (4). As in the VQ-VAE, the codebook gets no gradient from
the reconstruction term; since the encoder is frozen, no straight-through estimator and no
commitment term (the third term of eq. 4) are needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def bits_per_index(num_codes: int) -> int:
    """ceil(log2 K): the bits one index takes on the channel."""
    if num_codes < 2:
        raise ValueError(f"num_codes={num_codes} out of range [2, inf): one code carries no information")
    return math.ceil(math.log2(num_codes))


def indices_to_bits(indices: torch.Tensor, num_bits: int) -> torch.Tensor:
    """Pack integer indices (B, ...) into bits (B, n_indices * num_bits) uint8, MSB first."""
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= 2**num_bits):
        raise ValueError(f"indices must lie in [0, {2**num_bits}) to fit {num_bits} bits")
    shifts = torch.arange(num_bits - 1, -1, -1, device=indices.device)
    bits = (indices.long().unsqueeze(-1) >> shifts) & 1
    return bits.reshape(indices.shape[0], -1).to(torch.uint8)


def bits_to_indices(bits: torch.Tensor, num_bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`indices_to_bits`: bits (B, n * num_bits) -> long indices of ``shape``."""
    weights = 2 ** torch.arange(num_bits - 1, -1, -1, device=bits.device)
    return (bits.reshape(*shape, num_bits).long() * weights).sum(-1)


class VectorQuantizer(nn.Module):
    """``groups`` codebooks of ``num_codes`` vectors of ``code_dim / groups`` values (eq. 4).

    - ``quantize(z_e)``: (B, C, h, w) -> indices (B, groups, h, w), nearest code by L2.
    - ``lookup(indices)``: indices -> z_q (B, C, h, w).
    - ``codebook_loss(z_e, indices)``: ||sg[z_e] - e||^2, the second term of eq. (4).
    """

    def __init__(self, num_codes: int, code_dim: int, groups: int = 1) -> None:
        super().__init__()
        self.num_bits = bits_per_index(num_codes)
        if groups < 1 or code_dim % groups:
            raise ValueError(f"groups={groups} must be >= 1 and divide the feature channels ({code_dim})")
        self.num_codes, self.code_dim, self.groups = num_codes, code_dim, groups
        self.codes = nn.Parameter(torch.randn(groups, num_codes, code_dim // groups))

    def _split(self, z_e: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (groups, B*h*w, C/groups): one row per sub-vector."""
        if z_e.ndim != 4 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"expected a feature map (B, {self.code_dim}, h, w), got {tuple(z_e.shape)}")
        b, c, h, w = z_e.shape
        return z_e.reshape(b, self.groups, c // self.groups, h, w).permute(1, 0, 3, 4, 2).reshape(self.groups, b * h * w, -1)

    @torch.no_grad()
    def quantize(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every sub-vector: (B, groups, h, w) long."""
        b, _, h, w = z_e.shape
        nearest = torch.cdist(self._split(z_e), self.codes.detach()).argmin(-1)  # (groups, B*h*w)
        return nearest.reshape(self.groups, b, h, w).permute(1, 0, 2, 3).contiguous()

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """z_q(x): the code vectors for ``indices`` (B, groups, h, w), as a (B, C, h, w) map."""
        b, g, h, w = indices.shape
        if g != self.groups:
            raise ValueError(f"indices have {g} groups, the codebook has {self.groups}")
        flat = indices.permute(1, 0, 2, 3).reshape(g, -1)  # (groups, B*h*w)
        vectors = torch.stack([self.codes[i][flat[i]] for i in range(g)])  # (groups, B*h*w, C/g)
        return vectors.reshape(g, b, h, w, -1).permute(1, 0, 4, 2, 3).reshape(b, self.code_dim, h, w)

    def codebook_loss(self, z_e: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """||sg[z_e(x)] - e||^2 of eq. (4), averaged over elements; moves only the codes."""
        return torch.mean((z_e.detach() - self.lookup(indices)) ** 2)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_q, indices, codebook loss) for a feature map."""
        indices = self.quantize(z_e)
        return self.lookup(indices), indices, self.codebook_loss(z_e, indices)

    @torch.no_grad()
    def init_kmeans(self, z_e: torch.Tensor, iterations: int = 10, seed: int = 0) -> None:
        """Set the codes by k-means on the sub-vectors of ``z_e`` (random distinct starts)."""
        vectors = self._split(z_e)  # (groups, N, d)
        generator = torch.Generator().manual_seed(seed)
        n = vectors.shape[1]
        for g in range(self.groups):
            # Sample with replacement only when there are fewer vectors than codes.
            pick = torch.randperm(n, generator=generator)[: self.num_codes]
            if n < self.num_codes:
                pick = torch.randint(n, (self.num_codes,), generator=generator)
            codes = vectors[g, pick.to(vectors.device)].clone()  # the draws stay on the CPU generator
            for _ in range(iterations):
                assign = torch.cdist(vectors[g], codes).argmin(-1)
                sums = torch.zeros_like(codes).index_add_(0, assign, vectors[g])
                counts = torch.bincount(assign, minlength=self.num_codes).unsqueeze(-1)
                codes = torch.where(counts > 0, sums / counts.clamp(min=1), codes)  # empty clusters keep their code
            self.codes[g] = codes

    def wrap_received(self, indices: torch.Tensor) -> torch.Tensor:
        """Map received indices into [0, K): with K not a power of two, bit errors can produce
        an index >= K; the receiver wraps it modulo K (any fixed rule would do)."""
        return indices % self.num_codes
