"""Every registered detector trains briefly and learns; folders reload; bad input is refused."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from deepaudit.detectors import create_detector, list_detectors, load_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.inference import score_items
from deepaudit.detectors.metrics import auc
from deepaudit.detectors.train import train_detector
from deepaudit.errors import DeepauditError, DependencyError
from deepaudit.manifest import read_manifest

FAST = {
    "spectral": {},
    "timm": {"epochs": 3, "device": "cpu"},
    "npr": {"epochs": 3, "device": "cpu"},
    "probe": {"device": "cpu", "backbone": "resnet10t"},
}


def test_registry():
    names = list_detectors()
    assert {"spectral", "timm", "npr", "probe", "reconstruction", "video-frames"} <= set(names)
    with pytest.raises(ValueError, match="unknown detector 'cnn'; valid: "):
        create_detector("cnn")
    with pytest.raises(ValueError, match="unexpected keyword"):
        create_detector("spectral", nonsense=1)
    with pytest.raises(DependencyError, match="needs autoencoder=DIR"):
        create_detector("reconstruction")


@pytest.mark.parametrize("name", sorted(FAST))
def test_detector_learns_and_reloads(detector_data, tmp_path, name):
    items = load_items(detector_data)
    det = create_detector(name, **FAST[name])
    metrics = train_detector(det, items, tmp_path / name, target_fpr=0.1)
    assert metrics["test"]["auc"] > 0.8, metrics["test"]
    assert metrics["test"]["n"] == len(items.split("test"))
    cfg = json.loads((tmp_path / name / "config.json").read_text())
    assert cfg["detector"] == name and cfg["threshold"] == det.threshold
    assert cfg["training"]["train"]["real"] > 0 and "test" in cfg["metrics"]
    again = load_detector(tmp_path / name)
    test = items.split("test")
    assert np.allclose(score_items(det, test), score_items(again, test), atol=1e-6)
    assert not list((tmp_path / name).glob("*.pkl"))


@pytest.mark.slow
def test_reconstruction_detector_spots_its_autoencoders_own_images(tmp_path):
    """AEROBLADE's premise on a suite latent model: its samples come out of the decoder, so
    they reconstruct through the autoencoder better than every real photo crop does."""
    from deepaudit.detectors.data import crop, read_for_detector
    from deepaudit.generators.suite import load_suite, run_suite
    from deepaudit.generators.training import TrainConfig, train_diffusion, write_real_crops

    latent = train_diffusion(
        TrainConfig(
            family="latent",
            channels=(8, 16),
            ae_channels=(16, 32),
            steps=2,
            ae_steps=20,
            batch_size=8,
        ),
        tmp_path / "latent",
        device="cpu",
    )
    data = write_real_crops(tmp_path / "data", 48, size=32, seed=99, source="photos")
    (data / "suite.toml").write_text(
        f'[[generate]]\ngenerator = "latent-ddim"\nmodel = "{latent}"\ncount = 48\n'
        "options = { steps = 4 }\n"
    )
    run_suite(load_suite(data / "suite.toml"), data, device="cpu")
    read_manifest(data).with_splits(ratios=(0.6, 0.2, 0.2), overwrite=True).write()
    items = load_items(data)
    det = create_detector("reconstruction", autoencoder=str(latent), device="cpu")
    metrics = train_detector(det, items, tmp_path / "rec")
    assert metrics["test"]["auc"] > 0.95 and metrics["test"]["accuracy"] > 0.8, metrics["test"]
    # the raw feature, before the learned head: mean absolute reconstruction error (log)
    test = items.split("test")
    crops = np.stack([crop(read_for_detector(i), det.input_size) for i in test])
    error = det.features(crops)[:, :3].mean(axis=1)
    assert error[test.labels == 1].max() < error[test.labels == 0].min()
    again = load_detector(tmp_path / "rec")
    assert np.allclose(again.predict_proba(crops), det.predict_proba(crops), atol=1e-6)


def test_one_class_and_empty_sets_are_refused(detector_data, tmp_path):
    items = load_items(detector_data)
    only_real = items.where(label=0)
    with pytest.raises(DeepauditError, match="only real items"):
        train_detector(create_detector("spectral"), only_real, tmp_path / "x")
    with pytest.raises(DeepauditError, match="empty"):
        items.split("nope").require_both_classes("training")


def test_foreign_or_tampered_folders_are_refused(detector_data, tmp_path):
    items = load_items(detector_data)
    det = create_detector("timm", epochs=1, device="cpu")
    train_detector(det, items, tmp_path / "t")
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    cfg["detector"] = "npr-v9"
    (tmp_path / "t" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeepauditError, match="unknown detector 'npr-v9'"):
        load_detector(tmp_path / "t")
    cfg["detector"] = "timm"
    cfg["params"]["model"] = "resnet18"
    (tmp_path / "t" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeepauditError, match="weights do not load"):
        load_detector(tmp_path / "t")
    import pickle

    cfg["params"]["model"] = "resnet10t"
    (tmp_path / "t" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "t" / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(DeepauditError, match="weights do not load"):
        load_detector(tmp_path / "t")
    with pytest.raises(DeepauditError, match="not a detector folder"):
        load_detector(tmp_path)


_TRAIN_PRINTING_WEIGHTS = """
import hashlib, sys
from deepaudit.detectors import create_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.train import train_detector

det = create_detector(
    "timm", model="test_resnet", epochs=3, batch_size=16, patience=5, seed=3,
    blur_p=0.5, jpeg_p=0.5, device="cpu",
)

def progress(step, total):  # the weights after every optimizer step
    state = det.module.state_dict()
    data = b"".join(state[k].contiguous().numpy().tobytes() for k in sorted(state))
    print(step, hashlib.sha256(data).hexdigest(), flush=True)

train_detector(det, load_items(sys.argv[1]), sys.argv[2], progress=progress)
"""


@pytest.mark.slow  # three training processes (two at once): mostly imports
def test_sigkill_inside_an_epoch_then_rerun_ends_with_the_same_bits(
    detector_data, tmp_path, run_script
):
    from safetensors.torch import load_file

    per_epoch = -(-len(load_items(detector_data).split("train")) // 16)
    a, b = tmp_path / "a", tmp_path / "b"
    with ThreadPoolExecutor(1) as pool:  # the uninterrupted run beside the killed one
        first = pool.submit(run_script, _TRAIN_PRINTING_WEIGHTS, detector_data, a)
        run_script(_TRAIN_PRINTING_WEIGHTS, detector_data, b, kill_after=per_epoch + 2)
        straight = dict(line.split() for line in first.result())
    assert len(straight) == 3 * per_epoch
    saved = json.loads((b / "checkpoint" / "progress.json").read_text())
    assert saved["step"] == per_epoch  # killed inside epoch 2: the epoch-1 checkpoint is there
    resumed = dict(line.split() for line in run_script(_TRAIN_PRINTING_WEIGHTS, detector_data, b))
    assert sorted(map(int, resumed)) == list(range(per_epoch + 1, 3 * per_epoch + 1))
    for step, digest in resumed.items():  # every step after the resume, bit for bit
        assert digest == straight[step], f"weights differ after step {step}"
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ha, hb = (json.loads((d / "config.json").read_text())["training"]["history"] for d in (a, b))
    assert [e["train_loss"] for e in ha["epochs"]] == [e["train_loss"] for e in hb["epochs"]]
    assert [e["val_auc"] for e in ha["epochs"]] == [e["val_auc"] for e in hb["epochs"]]
    assert not (b / "checkpoint").exists()


def test_ctrl_c_inside_an_epoch_saves_there_and_the_rerun_ends_with_the_same_bits(
    detector_data, tmp_path
):
    import signal

    items = load_items(detector_data)
    opts = {"model": "test_resnet", "epochs": 2, "batch_size": 16, "seed": 3, "device": "cpu"}
    per_epoch = -(-len(items.split("train")) // 16)
    straight = create_detector("timm", **opts)
    train_detector(straight, items, tmp_path / "a")

    def ctrl_c(step, total):
        if step == per_epoch + 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_detector(create_detector("timm", **opts), items, tmp_path / "b", progress=ctrl_c)
    saved = json.loads((tmp_path / "b" / "checkpoint" / "progress.json").read_text())
    assert saved["step"] == per_epoch + 2  # inside epoch 2: resumes from that very batch
    resumed = create_detector("timm", **opts)
    train_detector(resumed, items, tmp_path / "b")
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (d.training_summary["history"]["epochs"] for d in (straight, resumed))
    assert [e["train_loss"] for e in ha] == [e["train_loss"] for e in hb]


def test_broken_files_in_the_manifest_are_skipped(detector_data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(detector_data, root)
    m = read_manifest(root)
    victim = next(i for i in m.items if i.split == "train" and i.label == "real")
    (root / victim.path).write_bytes(b"not a png")
    det = create_detector("spectral")
    train_detector(det, load_items(root), tmp_path / "s")
    assert det.training_summary["skipped_broken"] == 1


def test_video_frames_detector(detector_data, tmp_path, clip):
    from deepaudit.detectors.inference import aggregate

    base = create_detector("spectral")
    train_detector(base, load_items(detector_data), tmp_path / "img")
    vid = create_detector("video-frames", base=str(tmp_path / "img"), frames=4, aggregation="max")
    scores = vid.predict_proba([clip, clip[0]])
    # a clip scores as its worst frame (aggregation="max"); a lone image as that image
    per_frame = base.predict_proba(list(clip))
    assert scores == pytest.approx([per_frame.max(), per_frame[0]])
    assert per_frame.min() < per_frame.max()  # the frames differ, so "max" is a real choice
    vid.save_pretrained(tmp_path / "vid")
    assert load_detector(tmp_path / "vid").predict_proba([clip])[0] == pytest.approx(scores[0])
    assert aggregate(np.array([0.1, 0.9, 0.5]), "topk", 2) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="aggregation must be"):
        create_detector("video-frames", base=str(tmp_path / "img"), aggregation="median")


def test_auc_is_above_chance_only_when_the_training_labels_are_real(detector_data):
    """Trained on shuffled labels a detector must be at chance on the test set; above chance,
    labels would be reaching it by another route (paths, the manifest, split overlap)."""
    import dataclasses

    from deepaudit.detectors.data import ItemSet

    items = load_items(detector_data)
    train, test = items.split("train"), items.split("test")
    y = test.labels
    scores = score_items(create_detector("spectral").fit(train), test)
    # permutation null: the AUC of these scores against labels they know nothing about
    rng = np.random.default_rng(0)
    null = np.array([auc(rng.permutation(y), scores) for _ in range(2000)])
    assert auc(y, scores) > max(0.8, np.quantile(null, 0.999))
    shuffled = []
    for k in range(8):
        perm = np.random.default_rng(k).permutation(train.labels)
        blind = ItemSet(
            [dataclasses.replace(i, label=int(b)) for i, b in zip(train, perm, strict=True)],
            train.root,
        )
        shuffled.append(auc(y, score_items(create_detector("spectral").fit(blind), test)))
    # each is a draw at chance, spread at least as wide as the null: their mean lies within
    # four standard errors of 0.5 (measured: mean 0.46, bound ±0.21; a leak gives ~1.0)
    se = max(null.std(), np.std(shuffled, ddof=1)) / np.sqrt(len(shuffled))
    assert abs(np.mean(shuffled) - 0.5) < 4 * se, shuffled
