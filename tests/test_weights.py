"""Weights I/O: safetensors + JSON card, SHA-256 check, no unpickling, clear errors."""
import json
import pickle

import pytest
import torch

from pynx_dlgap.models import (MSDNet, UNet, WeightsError, build_model, load_weights, read_card, save_weights,
                               sha256_file)


def _tiny(name="inpaint3d_small"):
    torch.manual_seed(0)
    m = build_model(name, channels=[4, 8, 8, 8], norm="batch")  # BatchNorm: buffers travel too
    for p in m.parameters():  # residual models start with a zero output conv: make it non-trivial
        p.data.add_(0.01 * torch.randn_like(p))
    m.train()
    m(torch.rand(4, 3, 16, 16, 16))  # update BN running stats
    return m.eval()


def test_round_trip_identical_outputs(tmp_path):
    m = _tiny()
    card = {"data_recipe": {"sim": "faceted crystals", "n": 1000}, "gap_widths": [3, 6],
            "metrics": {"pcc": 0.97}, "training_time_s": 12.5, "hardware": "2-core CPU",
            "normalisation": "normalize_patch v1"}
    written = save_weights(m, tmp_path / "inp.safetensors", card)
    assert (tmp_path / "inp.safetensors").is_file() and (tmp_path / "inp.json").is_file()
    on_disk = json.loads((tmp_path / "inp.json").read_text())
    assert on_disk == written
    assert on_disk["sha256"] == sha256_file(tmp_path / "inp.safetensors")
    assert on_disk["architecture"]["class"] == "UNetMod"
    assert on_disk["architecture"]["name"] == "inpaint3d_small"
    assert on_disk["gap_widths"] == [3, 6] and on_disk["metrics"]["pcc"] == 0.97
    assert on_disk["n_params"] == sum(p.numel() for p in m.parameters())

    m2, card2 = load_weights(tmp_path / "inp.safetensors")
    assert card2 == on_disk and not m2.training
    x = torch.rand(2, 3, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    # the card path works as well
    m3, _ = load_weights(tmp_path / "inp.json")
    with torch.no_grad():
        assert torch.equal(m(x), m3(x))


@pytest.mark.parametrize("model", [UNet(dims=2, in_channels=1, out_channels=2, depth=2, base_channels=4,
                                        out_activation="phasor"),
                                   MSDNet(dims=2, depth=4)])
def test_round_trip_other_classes(tmp_path, model):
    save_weights(model, tmp_path / "m", {})
    m2, card = load_weights(tmp_path / "m.safetensors")
    x = torch.rand(1, model.in_channels, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), m2(x))


def test_tampered_file_rejected(tmp_path):
    m = _tiny()
    path = tmp_path / "w.safetensors"
    save_weights(m, path, {})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="file corrupted or modified"):
        load_weights(path)


def test_pickle_file_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    card = {"format": "pynx-dlgap-weights/1", "architecture": UNet(dims=2, depth=1, base_channels=2).config,
            "sha256": sha256_file(path)}
    (tmp_path / "evil.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="never unpickles"):
        load_weights(path)
    assert not marker.exists()
    # a torch.save zip with the right checksum is refused too
    zpath = tmp_path / "state.safetensors"
    torch.save(UNet(dims=2, depth=1, base_channels=2).state_dict(), zpath)
    card["sha256"] = sha256_file(zpath)
    (tmp_path / "state.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="pickle"):
        load_weights(zpath)


def test_missing_files_explain(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file .*nothere\.safetensors not found.*train"):
        load_weights(tmp_path / "nothere.safetensors")
    m = UNet(dims=2, depth=1, base_channels=2)
    save_weights(m, tmp_path / "w.safetensors", {})
    (tmp_path / "w.json").unlink()
    with pytest.raises(WeightsError, match=r"model card .*w\.json not found"):
        load_weights(tmp_path / "w.safetensors")


def test_card_checks(tmp_path):
    m = UNet(dims=2, depth=1, base_channels=2)
    with pytest.raises(WeightsError, match="written by save_weights"):
        save_weights(m, tmp_path / "w", {"sha256": "x"})
    save_weights(m, tmp_path / "w", {"note": "ok"})
    assert read_card(tmp_path / "w.safetensors")["note"] == "ok"
    # a card whose architecture does not match the tensors
    card = read_card(tmp_path / "w.safetensors")
    card["architecture"]["kwargs"]["base_channels"] = 3
    card["architecture"]["kwargs"]["channels"] = [3]
    (tmp_path / "w.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights(tmp_path / "w.safetensors")
    # unknown classes are never built
    card["architecture"]["class"] = "subprocess.Popen"
    (tmp_path / "w.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="unknown model class"):
        load_weights(tmp_path / "w.safetensors")


def test_numpy_values_in_card(tmp_path):
    import numpy as np

    m = UNet(dims=2, depth=1, base_channels=2)
    card = save_weights(m, tmp_path / "w", {"pcc": np.float32(0.5), "widths": np.array([3, 6])})
    assert card["pcc"] == 0.5 and card["widths"] == [3, 6]


def test_shipped_inpainting_weights_load_and_are_checked():
    """The package's trained weights load without unpickling, checksum verified, with their card."""
    from pynx_dlgap.inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
    model, card = load_inpaint_model()
    assert card["sha256"] == sha256_file(DEFAULT_WEIGHTS)
    assert card["gap_widths_supported"] == [1, 12] and card["task"] == "inpaint"
    assert card["n_params"] == sum(p.numel() for p in model.parameters())
    assert "heldout_metrics" in card and "status" in card
