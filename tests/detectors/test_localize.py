"""The localisation detector: trained with the shared trainer on edited photos whose masks
the manifest names, it finds the edited region; its metrics, regions and resume."""

from __future__ import annotations

import numpy as np
import pytest

from deepaudit.detectors import create_detector, load_detector
from deepaudit.detectors.data import load_items
from deepaudit.detectors.localize import localization_report, read_mask, regions
from deepaudit.errors import DeepauditError
from deepaudit.manifest import ManifestItem, ManifestWriter
from deepaudit.media import file_sha256, write_image


def _edit(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace a random rectangle by a smooth, noise-free re-rendering of itself (what a
    generator's decoder leaves: no camera noise) plus a faint periodic pattern."""
    from PIL import Image, ImageFilter

    h, w = img.shape[:2]
    mh, mw = int(rng.integers(h // 4, h // 2)), int(rng.integers(w // 4, w // 2))
    y, x = int(rng.integers(0, h - mh)), int(rng.integers(0, w - mw))
    smooth = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2.5))).astype(float)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth += 12 * np.sin(xx * 2.1)[..., None] * np.sin(yy * 2.1)[..., None]
    out = img.copy()
    out[y : y + mh, x : x + mw] = np.clip(smooth[y : y + mh, x : x + mw], 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[y : y + mh, x : x + mw] = 255
    return out, mask


@pytest.fixture(scope="module")
def edited_set(tmp_path_factory):
    from deepaudit.photos import builtin_photos

    root = tmp_path_factory.mktemp("loc")
    rng = np.random.default_rng(0)
    photos = [p.image for p in builtin_photos()]
    with ManifestWriter(root) as w:
        for i in range(48):
            base = photos[i % len(photos)]
            y, x = (
                int(rng.integers(0, base.shape[0] - 96)),
                int(rng.integers(0, base.shape[1] - 96)),
            )
            img = np.ascontiguousarray(base[y : y + 96, x : x + 96])
            split = "val" if i % 6 in (0, 1) else "train"
            if i % 2 == 0:
                p = write_image(root / f"real{i}.png", img)
                w.write(
                    ManifestItem(
                        f"r{i}", p.name, file_sha256(p), "image", "real", "photos", split=split
                    )
                )
                continue
            out, mask = _edit(img, rng)
            p = write_image(root / f"edit{i}.png", out)
            m = write_image(root / f"edit{i}.mask.png", mask)
            w.write(
                ManifestItem(
                    f"e{i}",
                    p.name,
                    file_sha256(p),
                    "image",
                    "synthetic",
                    "blur-edit",
                    split=split,
                    extra={"mask": m.name},
                )
            )
    return root


@pytest.fixture(scope="module")
def trained(edited_set, tmp_path_factory):
    items = load_items(edited_set)
    det = create_detector(
        "localize", model="test_resnet", input_size=64, epochs=20, batch_size=8, lr=3e-3, seed=0
    )
    det.fit(items.split("train"), items.split("val"), device="cpu")
    out = tmp_path_factory.mktemp("det") / "localize"
    det.save_pretrained(out)
    return items, out


def test_masks_come_from_the_manifest(edited_set):
    items = load_items(edited_set)
    edited = [i for i in items if i.label == 1]
    assert all(i.mask is not None and i.mask.is_file() for i in edited)
    truth = read_mask(edited[0], (96, 96))
    assert 0.05 < truth.mean() < 0.3
    real = next(i for i in items if i.label == 0)
    assert not read_mask(real, (96, 96)).any()


@pytest.mark.slow
def test_the_localizer_finds_the_edited_region(trained):
    items, folder = trained
    det = load_detector(folder)
    assert 0.05 <= det.map_threshold <= 0.95
    test = items.split("val")
    rep = localization_report(det, test, bootstrap=50)
    o = rep["overall"]
    # a region it has learnt to see: far better than chance on pixels, and overlapping
    assert o["pixel_auc"] > 0.8
    assert o["iou"]["mean"] > 0.3 and o["f1"]["ci"][0] is not None
    assert o["f1"]["ci"][0] <= o["f1"]["mean"] <= o["f1"]["ci"][1]
    assert o["real_pixels_flagged"]["mean"] < 0.2
    assert set(rep["per_generator"]) == {"blur-edit"}
    assert set(rep["robustness"]) == {"jpeg:75", "resize:0.5"}
    # maps at the image's own size, and regions around the edit
    edited = next(i for i in test if i.label == 1)
    from deepaudit.media import read_image

    img = read_image(edited.path)
    (prob,) = det.predict_map([img])
    assert prob.shape == img.shape[:2] and 0.0 <= prob.min() <= prob.max() <= 1.0
    found = regions(prob, det.map_threshold)
    truth = read_mask(edited, img.shape[:2])
    ys, xs = np.nonzero(truth)
    x, y, w, h = found[0]["box"]
    # the largest region overlaps the true rectangle
    assert x < xs.max() and xs.min() < x + w and y < ys.max() and ys.min() < y + h
    # and it is a whole-image detector too: edited crops score over real ones
    scores = det.predict_proba([read_image(i.path) for i in test])
    y_true = test.labels
    assert scores[y_true == 1].mean() > scores[y_true == 0].mean()


def test_regions_are_connected_boxes_largest_first():
    prob = np.zeros((100, 100), np.float32)
    prob[10:30, 10:40] = 0.9
    prob[60:65, 60:65] = 0.7
    prob[90, 90] = 0.99  # one pixel: under the minimum area
    out = regions(prob, 0.5)
    assert [r["box"] for r in out] == [[10, 10, 30, 20], [60, 60, 5, 5]]
    assert out[0]["mean_score"] == pytest.approx(0.9)


def test_localization_needs_masks(edited_set):
    items = load_items(edited_set)
    det = create_detector("localize", input_size=64)
    only_real = type(items)([i for i in items if i.label == 0], items.root)
    with pytest.raises(DeepauditError, match="no synthetic item has a mask"):
        localization_report(det, only_real)


def test_ctrl_c_mid_training_resumes_to_the_same_bits(edited_set, tmp_path):
    """The shared trainer's exact resume holds for the per-pixel target too."""
    import signal

    import torch

    from deepaudit.detectors.train import train_detector

    items = load_items(edited_set)
    opts = {"model": "test_resnet", "input_size": 32, "epochs": 2, "batch_size": 8, "seed": 1}
    per_epoch = -(-len(items.split("train")) // 8)
    straight = create_detector("localize", **opts)
    train_detector(straight, items, tmp_path / "a")

    def ctrl_c(step, total):
        if step == per_epoch + 1:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train_detector(create_detector("localize", **opts), items, tmp_path / "b", progress=ctrl_c)
    assert (tmp_path / "b" / "checkpoint").is_dir()
    resumed = create_detector("localize", **opts)
    train_detector(resumed, items, tmp_path / "b")
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.map_threshold == resumed.map_threshold
    assert load_detector(tmp_path / "b").map_threshold == resumed.map_threshold
