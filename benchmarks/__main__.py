"""Run every benchmark and print one JSON document: ``python -m benchmarks [--quick]``."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.util import find_spec

from benchmarks import (
    bench_manifest,
    bench_media,
    generate,
    provenance,
    scale,
    scale_cli,
    scan,
    train,
    zoo,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Small sizes, a few seconds.")
    args = parser.parse_args(argv)
    results = {
        "media": bench_media.run(quick=args.quick),
        "manifest": bench_manifest.run(quick=args.quick),
        "provenance": provenance.run(quick=args.quick),
        "generate": generate.run(quick=args.quick),
        "train": train.run(quick=args.quick),
        "scan": scan.run(quick=args.quick),
        "zoo": zoo.run(quick=args.quick),
        # the Ray scan against the local one: always the quick form here (the full one is
        # `python -m benchmarks.scale`); skipped where the scale extra is not installed
        "scale": scale.run(quick=True) if find_spec("ray") else {"skipped": "no ray"},
        # the same from the shell, on a long-lived cluster with kept actors (quick form)
        "scale_cli": scale_cli.run(quick=True) if find_spec("ray") else {"skipped": "no ray"},
    }
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
