"""Manifest speed: append (flushed per line) and read/validate, items per second."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from deepaudit.manifest import (
    GeneratorInfo,
    ManifestItem,
    ManifestWriter,
    read_manifest,
    validate_manifest,
)


def run(*, quick: bool = False) -> dict:
    n = 2_000 if quick else 50_000
    items = [
        ManifestItem(
            id=f"ddpm-{i:07d}",
            path=f"synthetic/ddpm/{i:07d}.png",
            sha256=f"{i:064x}",
            kind="image",
            label="synthetic",
            source="ddpm",
            generator=GeneratorInfo(model="ddpm-tiny", sampler="ddim", steps=50, seed=i),
            attributes={"scene": "texture"},
            width=32,
            height=32,
            frames=1,
        )
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with ManifestWriter(tmp) as w:
            for item in items:
                w.write(item)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        m = read_manifest(tmp)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        problems = validate_manifest(tmp)
        t_validate = time.perf_counter() - t
        t = time.perf_counter()
        m.with_splits(overwrite=True)
        t_split = time.perf_counter() - t
    assert len(m) == n and not problems
    return {
        "items": n,
        "append_flushed_per_s": round(n / t_write),
        "read_per_s": round(n / t_read),
        "validate_per_s": round(n / t_validate),
        "split_per_s": round(n / t_split),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    json.dump(run(quick=parser.parse_args().quick), sys.stdout, indent=2)
    sys.stdout.write("\n")
