"""Damaged media through every reader and the scan: errors are DeepauditErrors, never crashes.

Property-based (hypothesis): real files written and signed here are bit-flipped, truncated,
zeroed, given another format's header or a duplicated chunk (tests/media_mutations.py), then
read by everything a user points at a file. Derandomized, so CI sees the same examples each
run; a failure prints the seed format and the mutations that broke it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.media_mutations import (
    Mutation,
    check_readers,
    check_scan,
    mutate_all,
    tiny_detector,
    write_seeds,
)

SEEDS = ("png", "jpeg", "webp", "gif", "mp4", "c2pa-png", "c2pa-jpeg")
SIZES = st.sampled_from((1, 2, 3, 4, 8, 16, 64, 256, 4096))
AT = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)

MUTATION = st.one_of(
    st.builds(Mutation, kind=st.just("flip"), at=AT, size=st.integers(0, 7)),
    st.builds(Mutation, kind=st.just("truncate"), at=AT),
    st.builds(Mutation, kind=st.just("zero"), at=AT, size=SIZES),
    st.builds(
        Mutation,
        kind=st.just("transplant"),
        at=st.just(0.0),
        size=st.integers(1, 64) | SIZES,
        donor=st.sampled_from(SEEDS),
    ),
    st.builds(Mutation, kind=st.just("duplicate"), at=AT, size=SIZES),
)
DAMAGED = st.tuples(
    st.sampled_from(SEEDS),
    st.lists(MUTATION, min_size=1, max_size=3),
    st.sampled_from((None, *SEEDS)),  # None: the seed's own extension; else another's
)
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, photo, clip, creds) -> dict[str, Path]:
    paths = write_seeds(tmp_path_factory.mktemp("seeds"), photo, clip, creds["signing"])
    assert set(paths) == set(SEEDS)
    return paths


@pytest.fixture(scope="module")
def donors(seeds) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in seeds.items()}


@pytest.fixture(scope="module")
def context(creds):
    from deepaudit.c2pa_layer import make_context

    return make_context(creds["ca"])


def _write(folder: Path, name: str, seeds, donors, damaged) -> Path:
    fmt, mutations, ext_of = damaged
    path = folder / f"{name}{seeds[ext_of or fmt].suffix}"
    path.write_bytes(mutate_all(donors[fmt], mutations, donors))
    return path


def test_seeds_pass_the_contract_undamaged(seeds, context):
    """The seeds themselves read cleanly: damage, not the seed, is what the fuzzing varies."""
    for fmt, path in seeds.items():
        outcome = check_readers(path, context=context)
        assert outcome["probe"] == "ok" and outcome["read_ai_metadata"] == "ok", (fmt, outcome)
        expected = "trusted" if fmt.startswith("c2pa") else "absent"
        assert outcome["inspect_provenance"] == expected, (fmt, outcome)
    assert check_readers(seeds["jpeg"], context=context)["read_image"] == "ok"
    assert check_readers(seeds["mp4"], context=context)["read_video"] == "ok"


@settings(FUZZ, max_examples=120)
@given(damaged=DAMAGED)
def test_damaged_files_raise_only_deepaudit_errors(seeds, donors, context, damaged):
    with tempfile.TemporaryDirectory() as tmp:
        check_readers(_write(Path(tmp), "damaged", seeds, donors, damaged), context=context)


@pytest.fixture(scope="module")
def spectral(tmp_path_factory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
@settings(FUZZ, max_examples=6)
@given(folder=st.lists(DAMAGED, min_size=4, max_size=10))
def test_scan_gives_every_damaged_file_one_row(seeds, donors, spectral, creds, folder):
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp) / "box"
        box.mkdir()
        for i, damaged in enumerate(folder):
            _write(box, f"{i:02d}", seeds, donors, damaged)
        check_scan(box, Path(tmp) / "scan", detectors=[spectral], anchors=creds["ca"])


@pytest.mark.slow
def test_seeded_400_file_corpus_has_no_crashes(tmp_path):
    """The round-1 figure, kept: 400 mutated files, every reader, one scan, zero crashes."""
    from tests.media_mutations import run_corpus

    result = run_corpus(tmp_path, 400, seed=0)
    assert result["crashes"] == 0, result["crash_details"][:3]
    assert result["scan_error"] is None and result["scan_rows"] == 400
