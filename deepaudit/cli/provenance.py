"""``deepaudit provenance``, ``sign`` and ``demo-cert``: where files say they came from,
and signing files so that they say it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepaudit.cli.console import (
    EXIT_FINDINGS,
    EXIT_USAGE,
    AnchorsOpt,
    JsonOpt,
    LegacyAnchorsOpt,
    NoDefaultTrustOpt,
    errors_to_exit,
    expand_paths,
    print_json,
    progress_bar,
    stderr,
    stdout,
)

__all__ = ["demo_cert", "provenance", "sign"]


def provenance(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", exists=True)
    ],
    trust_anchors: AnchorsOpt = None,
    no_default_trust: NoDefaultTrustOpt = False,
    legacy_trust_anchors: LegacyAnchorsOpt = None,
    tree: Annotated[
        bool, typer.Option("--tree", help="Show the manifest and its ingredients as a tree.")
    ] = False,
    no_watermark: Annotated[
        bool, typer.Option("--no-watermark", help="Skip invisible-watermark decoding.")
    ] = False,
    as_json: JsonOpt = False,
    rubric_json: Annotated[
        Path | None,
        typer.Option(
            "--rubric-json",
            help="Also write each file's C2PA Asset Rubrics results to this JSON file: the "
            "signals graph in the conformance program's asset-rubric-signals-local-output "
            "shape, and the integrity rubric's results per manifest.",
            dir_okay=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 1 when a manifest is invalid or malformed, or a file unreadable."
        ),
    ] = False,
) -> None:
    """Where files say they came from: C2PA manifest state (trusted / untrusted / invalid /
    absent / remote / malformed), signer, AI declaration and ingredients, plus AI metadata
    and Stable Diffusion invisible watermarks. Each manifest is classified by the C2PA Asset
    Rubrics 1.0 (signals such as fullyGenAIMedia, perceptibleGenAI, capturedMedia; integrity).
    Offline: remote manifests are not fetched."""
    from deepaudit.audit.provenance import audit_file
    from deepaudit.c2pa_layer import make_context

    with errors_to_exit():
        ctx = make_context(
            trust_anchors,
            default_trust=not no_default_trust,
            legacy_anchors=legacy_trust_anchors,
        )
    from deepaudit.c2pa_layer import SIDECAR_SUFFIX, asset_of_sidecar

    # A sidecar manifest (.c2pa) is read with the file it describes, as in the scan.
    files = [
        f
        for f in expand_paths(paths)
        if f.suffix.lower() != SIDECAR_SUFFIX or f in paths or asset_of_sidecar(f) is None
    ]
    records: list[dict[str, Any]] = []
    with progress_bar("reading provenance", enabled=len(files) > 20) as update:
        for done, f in enumerate(files, start=1):
            records.append(
                audit_file(
                    f,
                    context=ctx,
                    trust_anchors=trust_anchors,
                    default_trust=not no_default_trust,
                    legacy_anchors=legacy_trust_anchors,
                    check_watermark=not no_watermark,
                    rubric_json=rubric_json is not None,
                )
            )
            update(done, len(files))
    if rubric_json is not None:
        _write_rubric_json(rubric_json, [r.pop("rubric_json") for r in records])
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    if as_json:
        print_json({"files": records, "summary": {"files": len(records), "states": states}})
    else:
        for r in records:
            _print_provenance(r, tree)
        if len(records) > 1:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
            stdout().print(f"{len(records)} files: {counts}", markup=False)
    if strict and (states.get("invalid") or states.get("malformed")):
        raise typer.Exit(EXIT_FINDINGS)


def _write_rubric_json(path: Path, per_file: list[dict[str, Any]]) -> None:
    import json
    import os

    from deepaudit.audit.rubrics import RELEASE

    doc = {"release": RELEASE, "files": per_file}
    with errors_to_exit():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    stderr().print(f"rubric results of {len(per_file)} files written to {path}", markup=False)


def _print_provenance(r: dict[str, Any], tree: bool) -> None:
    from rich.text import Text
    from rich.tree import Tree

    out = stdout()
    out.print(Text(f"{r['path']}: {r['state']} - {r['conclusion']}"))
    out.print(Text(f"  {r['reason']}"))
    if r.get("signer") and r["signer"].get("not_after"):
        s = r["signer"]
        out.print(Text(f"  certificate valid {s.get('not_before')} to {s.get('not_after')}"))
    if r.get("time_stamp"):
        out.print(Text(f"  {r['time_stamp']['label']}"))
    if r.get("sidecar_ignored"):
        note = "not read: the file holds its own manifest store"
        out.print(Text(f"  sidecar {r['sidecar_ignored']} {note}"))
    for who in r.get("identities") or []:
        failed = f" [{', '.join(who['failures'])}]" if who.get("failures") else ""
        out.print(Text(f"  identity: {who['summary']}{failed}"))
    if r.get("digital_source_types"):
        out.print(Text("  digital source type: " + ", ".join(r["digital_source_types"])))
    if r.get("signals"):
        said = "; ".join(f"{s['reportText']} ({s['manifest']})" for s in r["signals"])
        out.print(Text(f"  signals (C2PA Asset Rubrics): {said}"))
    failed = [c["reportText"] for c in r.get("integrity") or [] if c.get("value") is False]
    if failed:
        out.print(Text("  integrity: " + "; ".join(failed)))
    if tree and (r.get("actions") or r.get("ingredients")):
        root = Tree(
            Text(f"{r.get('title') or r['path']} [{r['state']}] {r.get('claim_generator')}")
        )
        _provenance_branch(root, r)
        out.print(root)
    meta = r.get("metadata") or {}
    for sig in meta.get("signals", []):
        out.print(Text(f"  metadata: {sig['claim']} ({sig['strength']}) {sig['summary']}"))
    if "error" in meta:
        out.print(Text(f"  metadata: error: {meta['error']['message']}"))
    wm = r.get("watermark")
    if wm and wm.get("detected"):
        b = wm["best"]
        out.print(
            Text(
                f"  watermark: {b['scheme']} found ({b['matched_bits']}/{b['n_bits']} bits, "
                f"p={wm['p_value']:.2g})"
            )
        )
    elif wm and wm.get("tried"):
        schemes = ", ".join(dict.fromkeys(m["scheme"] for m in wm["tried"]))
        out.print(Text(f"  watermark: none found ({schemes} checked)"))


def _provenance_branch(node: Any, m: dict[str, Any]) -> None:
    from rich.text import Text

    for a in m.get("actions") or []:
        dst = f" [{a['digital_source_type']}]" if a.get("digital_source_type") else ""
        node.add(Text(f"action {a['action']}{dst}"))
    # a node's own signals (the record's flat list: the active manifest's entries)
    traits = [
        t["trait"].split("signal_")[-1] for t in m.get("signals") or [] if t.get("active", True)
    ]
    if traits:
        node.add(Text("signals " + ", ".join(traits)))
    for ing in m.get("ingredients") or []:
        codes = f" {', '.join(ing['codes'])}" if ing.get("codes") else ""
        child = node.add(
            Text(
                f"ingredient {ing.get('title')} ({ing.get('relationship')}): {ing['state']}{codes}"
            )
        )
        _provenance_branch(child, ing)


def sign(
    paths: Annotated[list[Path], typer.Argument(help="Images or videos to sign.", exists=True)],
    cert: Annotated[
        Path, typer.Option("--cert", help="PEM certificate chain: end-entity first, no root.")
    ],
    key: Annotated[Path, typer.Option("--key", help="PEM private key of that certificate.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (one input) or folder (several)."),
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Replace each input with its signed version.")
    ] = False,
    ai_generated: Annotated[
        bool,
        typer.Option(
            "--ai-generated",
            help="Declare the content AI-generated (digitalSourceType trainedAlgorithmicMedia).",
        ),
    ] = False,
    source_type: Annotated[
        str | None,
        typer.Option(
            "--source-type",
            help="IPTC digital source type, e.g. digitalCapture, "
            "compositeWithTrainedAlgorithmicMedia (default: digitalCreation).",
        ),
    ] = None,
    parent: Annotated[
        Path | None,
        typer.Option(
            "--parent", help="The file this one was edited from (an ingredient).", exists=True
        ),
    ] = None,
    sidecar: Annotated[
        bool,
        typer.Option("--sidecar", help="Write the manifest to <name>.c2pa; leave the media as is."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Attach a signed C2PA manifest (no thumbnail, no network) declaring how each file was made."""
    from deepaudit.c2pa_layer import load_signing_credentials, sign_file

    if out is None and not in_place:
        stderr().print("error: give --out FILE/DIR or --in-place", markup=False)
        raise typer.Exit(EXIT_USAGE)
    if ai_generated and source_type and source_type != "trainedAlgorithmicMedia":
        stderr().print("error: --ai-generated and --source-type disagree", markup=False)
        raise typer.Exit(EXIT_USAGE)
    dst = "trainedAlgorithmicMedia" if ai_generated else (source_type or "digitalCreation")
    results = []
    with errors_to_exit():
        creds = load_signing_credentials(cert, key)
        for p in paths:
            if in_place:
                target = p
            elif len(paths) == 1 and not (out.exists() and out.is_dir()):
                target = out
            else:
                target = out / p.name
            signed = sign_file(
                p, creds, target, digital_source_type=dst, parent=parent, sidecar=sidecar
            )
            results.append({"path": str(p), "signed": str(signed), "digital_source_type": dst})
    if as_json:
        print_json({"files": results, "signer": creds.subject})
    else:
        for r in results:
            stdout().print(f"signed {r['signed']} ({r['digital_source_type']})", markup=False)


def demo_cert(
    out_dir: Annotated[Path, typer.Argument(help="Folder for ca.pem, signer.pem, signer.key.pem.")],
    organization: Annotated[str, typer.Option(help="Organisation in the certificates.")] = (
        "deepaudit demo"
    ),
) -> None:
    """Make a throwaway CA and signing certificate to try `sign` and `provenance` with.
    Not for real use: anyone holding these files can sign as you."""
    from deepaudit.c2pa_layer import make_demo_credentials

    paths = make_demo_credentials(out_dir, organization=organization)
    out = stdout()
    out.print(f"trust anchor: {paths['ca']}", markup=False)
    out.print(f"certificate:  {paths['chain']}", markup=False)
    out.print(f"private key:  {paths['key']}", markup=False)
    out.print(
        f"try: deepaudit sign IMG --cert {paths['chain']} --key {paths['key']} --ai-generated "
        f"-o signed.png && deepaudit provenance signed.png --trust-anchors {paths['ca']}",
        markup=False,
    )
