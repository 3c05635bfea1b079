"""The semantic link (eq. 4): shapes, training lowers the error, metrics, the device entry
point, bad inputs; plus the quality measures and the low-light transform it reports."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from crlsc_fl.models.encoders import build_encoder, save_encoder
from crlsc_fl.stage2.channels import build_channel
from crlsc_fl.stage2.features import as_image_tensor, load_frozen_encoder
from crlsc_fl.stage2.link import (
    LinkConfig,
    SemanticLink,
    evaluate_link,
    load_link,
    reconstruct,
    save_link,
    train_decoder,
    train_device_decoder,
)
from crlsc_fl.stage2.lowlight import darken
from crlsc_fl.stage2.quality import encoded_bytes, psnr, ssim

TINY = LinkConfig(num_codes=16, base_width=32, min_width=16, epochs=10, batch_size=16, lr=3e-3)


@pytest.fixture(scope="module")
def trained(encoder, images):
    torch.manual_seed(0)
    return train_decoder(encoder, images, TINY)


@pytest.mark.parametrize("layer, groups", [("layer3", 1), ("layer4", 1), ("layer3", 4), ("layer2", 2)])
def test_link_output_shape_equals_input(encoder, images, layer: str, groups: int) -> None:
    link = SemanticLink(encoder, LinkConfig(layer=layer, code_groups=groups, num_codes=8, base_width=16, min_width=8), 32)
    x = as_image_tensor(images[:3])
    with torch.no_grad():
        out = link(x, build_channel("bsc", ber=0.1), generator=0)
    assert out.shape == x.shape
    side = {"layer2": 4, "layer3": 2, "layer4": 1}[layer]
    assert link.encode(images[:3]).shape == (3, groups, side, side)
    assert link.bits_per_image == groups * side * side * 3  # K = 8: 3 bits per index


def test_short_training_lowers_reconstruction_error(encoder, images, trained) -> None:
    history = trained.history["reconstruction_mse"]
    assert len(history) == TINY.epochs
    assert history[-1] < 0.7 * history[0]
    untrained = train_decoder(encoder, images, dataclasses.replace(TINY, epochs=0)).link
    x = as_image_tensor(images)

    def mse(link: SemanticLink) -> float:
        return float(((reconstruct(link, link.encode(images))[0] - x) ** 2).mean())

    assert mse(trained.link) < 0.7 * mse(untrained)


def test_encoder_stays_frozen_and_caller_untouched(images, trained) -> None:
    caller = build_encoder("resnet18", dim=16, stem="imagenet", hidden_dim=16).train()
    before = {k: v.clone() for k, v in caller.state_dict().items()}
    link = train_decoder(caller, images[:32], dataclasses.replace(TINY, epochs=1)).link
    assert all(torch.equal(before[k], v) for k, v in caller.state_dict().items())  # batch-norm statistics too
    assert caller.training and all(p.requires_grad for p in caller.parameters())
    assert not link.encoder.training and not any(p.requires_grad for p in link.encoder.parameters())
    assert not trained.link.encoder.training


def test_evaluate_link_metrics(images, trained) -> None:
    rows = evaluate_link(trained.link, images[:32], [build_channel("ideal"), build_channel("bsc", ber=0.3), build_channel("awgn", snr_db=-10)])
    ideal, bsc, awgn = rows
    assert ideal["measured_ber"] == 0.0 and bsc["measured_ber"] == pytest.approx(0.3, abs=0.1)
    assert bsc["psnr"] < ideal["psnr"] and awgn["psnr"] < ideal["psnr"]
    assert 0 < ideal["ssim"] <= 1
    assert ideal["bits_per_image"] == trained.link.bits_per_image == 4 * 4  # 2x2 map, K = 16
    png, jpeg = encoded_bytes(images[:32], "png").mean() * 8, encoded_bytes(images[:32], "jpeg").mean() * 8
    assert ideal["ratio_png"] == pytest.approx(16 / png) and ideal["ratio_jpeg"] == pytest.approx(16 / jpeg)


@pytest.mark.parametrize("channel", [build_channel("bsc", ber=0.03), build_channel("awgn", snr_db=3.0), build_channel("ideal")])
def test_evaluate_link_decodes_only_changed_images_to_the_same_result(images, trained, channel) -> None:
    link, sent = trained.link, images[:48]
    indices = link.encode(sent)
    changed = int((link.transmit(indices, channel, 5)[0] != indices).flatten(1).any(1).sum())
    assert changed == 0 if channel.describe()["channel"] == "ideal" else 0 < changed < len(sent)  # a mix of both cases
    row = evaluate_link(link, sent, [channel], seed=5)[0]
    every, errors = reconstruct(link, indices, channel, 5)  # every image decoded after the channel
    reference = as_image_tensor(sent)
    assert row["psnr"] == pytest.approx(float(psnr(every, reference).mean()), rel=1e-6)
    assert row["ssim"] == pytest.approx(float(ssim(every, reference).mean()), rel=1e-6)
    assert row["measured_ber"] == errors / (len(sent) * link.bits_per_image)


def test_lowlight_through_the_link(images, trained) -> None:
    dark = darken(images[:32])
    normal_row = evaluate_link(trained.link, images[:32])[0]
    dark_row = evaluate_link(trained.link, dark, targets=dark)[0]
    assert np.isfinite(dark_row["psnr"]) and normal_row["psnr"] > 0


def test_train_device_decoder_from_a_file(tmp_path, images) -> None:
    torch.manual_seed(1)
    path = tmp_path / "encoder.pt"
    save_encoder(build_encoder("resnet18", dim=32, stem="imagenet", hidden_dim=32), path, topology="ring", device="device-0")
    config = {"num-codes": 16, "base-width": 16, "min_width": 8, "epochs": 2, "batch-size": 16}
    metrics = train_device_decoder(
        path, images[:48], images[48:64], config, channel="awgn", channel_params={"snr_db": 5.0},
        save_path=tmp_path / "link.pt", expected_arch="resnet18",
    )
    expected = {
        "train_mse_first", "train_mse_last", "codebook_loss_last", "psnr", "ssim", "measured_ber", "bits_per_image",
        "ratio_png", "ratio_jpeg", "lowlight_psnr", "lowlight_ssim", "num_train", "num_eval", "seconds",
    }
    assert set(metrics) == expected
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())  # Flower MetricRecord-ready
    assert metrics["num_train"] == 48 and metrics["num_eval"] == 16

    encoder = load_frozen_encoder(path)
    link = load_link(tmp_path / "link.pt", encoder)
    again = train_device_decoder(encoder, images[:48], images[48:64], {**config, "epochs": 0}, init_state=link.trainable_state())
    assert again["psnr"] == pytest.approx(evaluate_link(link, images[48:64])[0]["psnr"])  # federated weights are used
    with pytest.raises(ValueError, match="trained on another encoder"):
        load_link(tmp_path / "link.pt", build_encoder("resnet18", dim=32, stem="imagenet", hidden_dim=32))


def test_saved_link_round_trip(tmp_path, encoder, images, trained) -> None:
    save_link(trained.link, tmp_path / "link.pt")
    loaded = load_link(tmp_path / "link.pt", encoder)
    indices = trained.link.encode(images[:8])
    assert torch.equal(loaded.encode(images[:8]), indices)
    assert torch.allclose(reconstruct(loaded, indices)[0], reconstruct(trained.link, indices)[0])


def test_encoder_file_of_another_architecture(tmp_path, images) -> None:
    path = tmp_path / "r18.pt"
    save_encoder(build_encoder("resnet18", dim=16, stem="imagenet", hidden_dim=16), path)
    with pytest.raises(ValueError, match=r"holds a 'resnet18' encoder, but 'resnet34' was chosen"):
        train_device_decoder(path, images[:8], expected_arch="resnet34")
    with pytest.raises(ValueError, match=r"holds a 'imagenet'-stem encoder, but stem 'cifar' was chosen"):
        load_frozen_encoder(path, stem="cifar")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not an encoder checkpoint"):
        load_frozen_encoder(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_frozen_encoder(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"channel": "awgn", "channel_params": {"snr_db": -40}}, ValueError, "awgn.snr-db=-40: out of range [-20, 40]"),
        ({"channel": "bsc", "channel_params": {"ber": 0.7}}, ValueError, "bsc.ber=0.7: out of range [0, 0.5]"),
        ({"channel": "laser"}, ValueError, "unknown channel 'laser'; valid: awgn, bsc, ideal, rayleigh"),
        ({"config": {"codes": 4}}, ValueError, "link.codes=4: Unexpected keyword argument"),
        ({"config": {"num_codes": 1}}, ValueError, "link.num-codes=1: Input should be greater than or equal to 2"),
        ({"config": {"layer": "layer5"}}, ValueError, "link.layer='layer5': 'layer5' is not allowed; valid: layer1, layer2, layer3, layer4"),
    ],
)
def test_bad_device_inputs_fail_before_training(encoder, images, kwargs, error, message) -> None:
    with pytest.raises(error) as err:
        train_device_decoder(encoder, images[:4], **kwargs)
    assert message in str(err.value)


def test_layer_whose_map_cannot_be_decoded(encoder) -> None:
    with pytest.raises(ValueError, match="a 2x2 feature map cannot be decoded to 48x48"):
        SemanticLink(encoder, LinkConfig(layer="layer4"), 48)  # 48 / 2 = 24 is no power of two


def test_link_rejects_other_image_sizes(images, trained) -> None:
    with pytest.raises(ValueError, match="built for 32x32 images"):
        trained.link.encode(np.zeros((2, 64, 64, 3), np.uint8))


# quality measures -------------------------------------------------------------------------


def test_ssim_matches_skimage() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 40, generator=g)
    b = (a + 0.1 * torch.randn(3, 3, 32, 40, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(3):
        ref = metrics.structural_similarity(
            a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=1.0,
        )
        assert float(ours[i]) == pytest.approx(float(ref), abs=1e-4)


def test_psnr_and_ssim_extremes() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert float(psnr(x, x).min()) == pytest.approx(100.0)
    assert float(psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1))) == pytest.approx(20.0)


def test_darken_is_the_documented_curve() -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(darken(x).flatten(), torch.tensor([0.0, 0.5 * 0.5**2.2, 0.5]))
    u8 = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    out = darken(u8)
    assert out.dtype == np.uint8 and out.tolist() == [[[[0, 28, 128]]]]
    with pytest.raises(ValueError, match=r"brightness=1.5 out of range \(0, 1\]"):
        darken(x, brightness=1.5)
    with pytest.raises(ValueError, match=r"gamma=0 out of range \(0, inf\)"):
        darken(x, gamma=0)


def test_accelerator_link_is_built_on_its_device_and_leaves_the_callers_encoder(encoder, images) -> None:
    """``meta`` stands for a GPU: the link's encoder copy, codebook and decoder go there, the
    indices are computed there, the caller's encoder stays on the CPU."""
    link = SemanticLink(encoder, TINY, 32, device="meta")
    assert {p.device.type for p in link.parameters()} | {b.device.type for b in link.buffers()} == {"meta"}
    assert {p.device.type for p in encoder.parameters()} == {"cpu"}
    indices = link.encode(images[:5])
    assert indices.device.type == "meta" and indices.shape == (5, 1, 2, 2)
    assert {p.device.type for p in SemanticLink(encoder, TINY, 32).parameters()} == {"cpu"}  # default: the encoder's device


@pytest.mark.parametrize(("kmeans_iterations", "stop"), [
    (0, r"item\(\) cannot be called on meta tensors"),  # after a whole step: the loss read back as a number
    (2, r"bincount: attempted to run this operator with Meta tensors"),  # k-means counts (no meta kernel)
])
def test_accelerator_decoder_training_runs_on_the_links_device(encoder, images, kmeans_iterations: int, stop: str) -> None:
    """Features, codebook start, quantisation, decoder, losses and Adam run on ``meta`` (a
    GPU's stand-in) up to the first operation that needs data."""
    config = dataclasses.replace(TINY, epochs=1, kmeans_iterations=kmeans_iterations)
    with pytest.raises(RuntimeError, match=stop):
        train_decoder(encoder, images[:32], config, device="meta")


def test_accelerator_device_decoder_on_an_explicit_cpu_equals_the_default(tmp_path, images) -> None:
    torch.manual_seed(1)
    path = tmp_path / "encoder.pt"
    save_encoder(build_encoder("resnet18", dim=32, stem="imagenet", hidden_dim=32), path)
    config = {"num-codes": 16, "base-width": 16, "min-width": 8, "epochs": 1, "batch-size": 16}
    runs = [train_device_decoder(path, images[:32], images[32:48], config, channel="awgn", channel_params={"snr_db": 5.0},
                                 device=device) for device in (None, "cpu")]
    for run in runs:
        run.pop("seconds")
    assert runs[0] == runs[1]
    assert {p.device.type for p in load_frozen_encoder(path, device="meta").parameters()} == {"meta"}
