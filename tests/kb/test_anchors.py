"""Anchor sets: wire round trip, corruption, targets, stratified selection."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.kb.anchors import AnchorSet, AnchorSetError, select_anchors


@pytest.fixture(scope="module")
def anchors() -> AnchorSet:
    images, _ = make_synthetic_images(20, image_size=32, seed=0)
    keys = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    return AnchorSet(images, keys / np.linalg.norm(keys, axis=1, keepdims=True), source="test")


def test_round_trip_keeps_keys_and_images(anchors: AnchorSet) -> None:
    blob = anchors.to_bytes()
    back = AnchorSet.from_bytes(blob)
    assert len(back) == 20 and back.dim == 16 and back.source == "test"
    np.testing.assert_allclose(back.keys, anchors.keys, atol=1e-3)  # float16 on the wire
    mse = np.mean((back.images.astype(float) - anchors.images) ** 2)
    assert 10 * np.log10(255**2 / mse) > 20  # JPEG quality 90 of noisy generated images: ~25 dB
    assert len(blob) < 20 * 32 * 32 * 3  # smaller than raw pixels


@pytest.mark.parametrize("position", [20, 200, -40, -2])
def test_flipped_byte_is_rejected(anchors: AnchorSet, position: int) -> None:
    blob = bytearray(anchors.to_bytes())
    blob[position] ^= 0xFF
    with pytest.raises(AnchorSetError, match="corrupt anchor set bytes"):
        AnchorSet.from_bytes(bytes(blob))


def test_other_bytes_are_rejected(anchors: AnchorSet) -> None:
    with pytest.raises(AnchorSetError, match="not a crlsc_fl anchor set"):
        AnchorSet.from_bytes(b"CRLSCKB1" + anchors.to_bytes()[8:])


def test_anchor_keyed_pkb_travels_as_keys_alone(anchors: AnchorSet) -> None:
    view = np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32)
    peer = anchors.with_keys(view, source="anchor-pkb:device-3")
    blob = peer.keys_to_bytes()
    assert len(blob) < 20 * 16 * 2 + 300  # float16 keys and a short header, no images
    back = anchors.keys_from_bytes(blob)
    assert back.source == "anchor-pkb:device-3" and back.images is anchors.images
    np.testing.assert_allclose(back.keys, view, atol=2e-3)


@pytest.mark.parametrize("damage, message", [
    (lambda blob: blob[:-2] + bytes([blob[-2] ^ 0xFF]) + blob[-1:], "corrupt anchor-keyed PKB bytes"),
    (lambda blob: b"CRLSCAN1" + blob[8:], "corrupt anchor-keyed PKB bytes"),
])
def test_damaged_anchor_keyed_pkb_is_rejected(anchors: AnchorSet, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnchorSetError, match=message):
        anchors.keys_from_bytes(damage(anchors.keys_to_bytes()))


def test_anchor_keyed_pkb_of_another_anchor_set_is_rejected(anchors: AnchorSet) -> None:
    other = AnchorSet(anchors.images[:10], anchors.keys[:10], source="other")
    with pytest.raises(AnchorSetError, match="keys 10 anchors, this anchor set holds 20"):
        anchors.keys_from_bytes(other.keys_to_bytes())


def test_dimension_check(anchors: AnchorSet) -> None:
    anchors.check_dim(16)
    with pytest.raises(AnchorSetError, match="output dimension 8 does not match the anchor keys' dimension 16"):
        anchors.check_dim(8)


def test_targets_deduplicate_shared_keys() -> None:
    images, labels = make_synthetic_images(12, num_classes=3, image_size=8, seed=1)
    class_keys = np.eye(3, 4, dtype=np.float32)
    unique, index = AnchorSet(images, class_keys[labels]).targets()
    assert unique.shape == (3, 4)
    np.testing.assert_array_equal(unique[index], class_keys[labels])


@pytest.mark.parametrize(("shape", "message"), [((5, 8, 8), "must be \\(N, H, W, 3\\)"), ((1, 8, 8, 3), "at least 2 anchors")])
def test_bad_shapes(shape: tuple, message: str) -> None:
    with pytest.raises(AnchorSetError, match=message):
        AnchorSet(np.zeros(shape, np.uint8), np.zeros((shape[0], 4)))


@pytest.mark.parametrize("count", [10, 37, 100])
def test_selection_is_stratified_and_seeded(count: int) -> None:
    labels = np.repeat(np.arange(10), 30)
    chosen = select_anchors(labels, count, seed=3)
    assert len(chosen) == len(set(chosen)) == count
    per_class = np.bincount(labels[chosen], minlength=10)
    assert per_class.max() - per_class.min() <= 1
    np.testing.assert_array_equal(chosen, select_anchors(labels, count, seed=3))
    assert not np.array_equal(chosen, select_anchors(labels, count, seed=4)) or count == 300
    with pytest.raises(ValueError, match="anchor count=301 out of range"):
        select_anchors(labels, 301, seed=0)
