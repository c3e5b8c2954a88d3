"""Compare two scans' ``results.jsonl``, ignoring what changes from run to run by design.

``python tools/compare_scans.py BEFORE/results.jsonl AFTER/results.jsonl [--root-name inbox]``

Rows are matched by their path below the scanned folder (``--root-name``). Ignored: absolute
paths, mtimes, and what a fresh signature changes in a re-signed file (its bytes: sha256 and
size; manifest labels and instance ids, which hold UUIDs; signing times; certificate
serial numbers and validity dates, since the demo makes a new CA each run). Everything else
is compared exactly — verdicts, reasons, provenance states and codes, metadata, watermark
bits, detector scores — and the largest detector-score difference is printed. Exit 1 when
anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

VOLATILE = {
    "path",
    "mtime_ns",
    "sha256",
    "size",
    "label",
    "instance_id",
    "signing_time",
    "time",
    "when",
    "serial_number",
    "not_before",
    "not_after",
    "seconds",
}


def _key(path: str, root_name: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[parts.index(root_name) + 1 :]) if root_name in parts else path


def _strip(value: Any, root: str) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v, root) for v in value]
    if isinstance(value, str) and root in value:  # messages that quote a path
        return value.split(root, 1)[1]
    return value


def _diff(a: Any, b: Any, where: str, out: list[str], score_diffs: list[float]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'after' if k in b else 'before'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out, score_diffs)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", out, score_diffs)
    elif a != b:
        if where.endswith((".score", ".frame_max")) and isinstance(a, float):
            score_diffs.append(abs(a - b))
        out.append(f"{where}: {a!r} != {b!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--root-name", default="inbox")
    ap.add_argument("--ignore-new-keys", action="append", default=[])
    args = ap.parse_args(argv)
    rows = []
    for f in (args.before, args.after):
        recs = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        rows.append({_key(r["path"], args.root_name): r for r in recs})
    before, after = rows
    problems: list[str] = []
    score_diffs: list[float] = []
    for k in sorted(set(before) | set(after)):
        if k not in before or k not in after:
            problems.append(f"{k}: only in {'after' if k in after else 'before'}")
            continue
        a = _strip(before[k], f"/{args.root_name}/")
        b = _strip(after[k], f"/{args.root_name}/")
        for extra in args.ignore_new_keys:
            _drop(b, extra.split("."))
        _diff(a, b, k, problems, score_diffs)
    for p in problems:
        print(p)
    print(
        json.dumps(
            {
                "files_before": len(before),
                "files_after": len(after),
                "differences": len(problems),
                "max_score_difference": max(score_diffs, default=0.0),
                "same_verdicts": all(
                    before[k].get("verdict") == after[k].get("verdict")
                    for k in set(before) & set(after)
                ),
            }
        )
    )
    return 1 if problems else 0


def _drop(rec: Any, keys: list[str]) -> None:
    """Remove a dotted key (``*`` matches every key at that level) from ``rec``."""
    if not isinstance(rec, dict) or not keys:
        return
    head, rest = keys[0], keys[1:]
    targets = list(rec) if head == "*" else [head]
    for t in targets:
        if t not in rec:
            continue
        if rest:
            _drop(rec[t], rest)
        else:
            del rec[t]


if __name__ == "__main__":
    sys.exit(main())
