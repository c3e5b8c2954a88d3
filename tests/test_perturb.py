"""Post-processing specs: parsing with clear errors, and what each one does to pixels."""

from __future__ import annotations

import numpy as np
import pytest

from deepaudit.perturb import apply_all, parse_perturbation


def test_each_perturbation(photo):
    assert parse_perturbation("resize:0.5").apply(photo).shape == (48, 64, 3)
    assert parse_perturbation("crop:0.5").apply(photo).shape == (48, 64, 3)
    jpeg = parse_perturbation("jpeg:30").apply(photo)
    assert jpeg.shape == photo.shape and not np.array_equal(jpeg, photo)
    blur = parse_perturbation("blur:2").apply(photo)
    assert (
        np.abs(np.diff(blur.astype(int), axis=1)).mean()
        < np.abs(np.diff(photo.astype(int), axis=1)).mean()
    )
    noise = parse_perturbation("noise:5")
    assert np.array_equal(noise.apply(photo, seed=1), noise.apply(photo, seed=1))
    assert not np.array_equal(noise.apply(photo, seed=1), noise.apply(photo, seed=2))
    chain = [parse_perturbation("jpeg:90"), parse_perturbation("resize:0.75")]
    assert apply_all(photo, chain).shape == (72, 96, 3)
    assert (
        parse_perturbation("jpeg:75").spec == "jpeg:75"
        and str(parse_perturbation("blur:1.5")) == "blur:1.5"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpg:75", "unknown perturbation 'jpg:75'; use one of jpeg:VALUE"),
        ("jpeg", "needs a value"),
        ("jpeg:abc", "not a number"),
        ("jpeg:0", r"value must be in \[1, 100\]"),
        ("jpeg:75.5", "whole number"),
        ("crop:1.5", r"value must be in"),
        ("noise:nan", "value must be in"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_perturbation(spec)
