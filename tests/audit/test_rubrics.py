"""The C2PA Asset Rubrics: our json-formula interpreter, the shipped rubric files, and every
signal on files the tests sign with c2pa's Builder (one per digital source type and edit
pattern), with the declaration and verdict that follow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from deepaudit.audit.jsonformula import FormulaError, compile_formula
from deepaudit.audit.provenance import inspect_provenance
from deepaudit.audit.rubrics import integrity_checks, load_rubric, load_rubric_file
from deepaudit.audit.verdict import decide
from deepaudit.media import write_image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# --------------------------------------------------------------------------- the interpreter


@pytest.mark.parametrize(
    ("expr", "data", "expected"),
    [
        ("a.b", {"a": {"b": 1}}, 1),
        ("a.'c.d'", {"a": {"c.d": 2}}, 2),
        ("a[1]", {"a": [1, 2]}, 2),
        ("a[5]", {"a": [1, 2]}, None),
        ("a[*].b", {"a": [{"b": 1}, {"c": 2}, {"b": 3}]}, [1, 3]),
        ("a[].b[]", {"a": [{"b": [1, 2]}, {"b": [3]}]}, [1, 2, 3]),
        ('a[?b == "x"].c', {"a": [{"b": "x", "c": 1}, {"b": "y", "c": 2}]}, [1]),
        ("a[?b > `1`].c | [0]", {"a": [{"b": 1, "c": "p"}, {"b": 2, "c": "q"}]}, "q"),
        ("missing || `[]`", {}, []),
        ("a || `[]`", {"a": 0}, []),  # json-formula: 0 is false
        ("a && b", {"a": 1, "b": 2}, 2),
        ('!contains(`["x"]`, "y")', {}, True),
        ('contains(a, "ell")', {"a": "hello"}, True),
        ('startsWith(a, "c2pa.")', {"a": None}, False),  # null coerced to ""
        ("length(a)", {}, 0),
        ("keys(a)", {"a": {"k": 1}}, ["k"]),
        ('{ failure: [{code: "X"}] }.failure[].code', {}, ["X"]),
        ('split("a__b", "__")[0]', {}, "a"),
        ("notNull(a, `3`)", {}, 3),
        ("a != null", {"a": 1}, True),
    ],
)
def test_json_formula_subset(expr, data, expected):
    assert compile_formula(expr)(data) == expected


def test_named_expressions_take_args_and_keep_the_call_site():
    fns = {}
    names = {"_first", "_here"}
    fns["_first"] = compile_formula("$args[0][0]", names)
    fns["_here"] = compile_formula("a", names)
    prog = compile_formula("_first(xs) == _here()", names)
    assert prog({"xs": [7], "a": 7}, {}, fns) is True


@pytest.mark.parametrize("expr", ["a.*", "upper(a)", "a ~ b", "`{bad json`"])
def test_unsupported_constructs_are_refused_at_compile_time(expr):
    with pytest.raises(FormulaError):
        compile_formula(expr)


def test_a_rubric_outside_the_subset_is_refused_naming_the_statement(tmp_path):
    bad = tmp_path / "r.yml"
    bad.write_text(
        "rubric_metadata: {name: r, version: '1'}\n---\n"
        "- id: x:y\n  expression: 'upper(a)'\n  reportText: t\n"
    )
    with pytest.raises(ValueError, match=r"r\.yml: statement x:y: function upper"):
        load_rubric_file(bad)


# --------------------------------------------------------------------------- shipped files


def test_shipped_rubrics_match_their_checksums_and_carry_versions():
    from deepaudit.audit import rubrics

    folder = Path(rubrics.__file__).with_name("rubric_data")
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert "CC BY 4.0" in (folder / "SOURCE.md").read_text().replace("Attribution 4.0", "CC BY 4.0")
    sig, integ = load_rubric("signals"), load_rubric("integrity")
    assert (sig.name, sig.version, sig.date) == (
        "C2PA Asset Signals Rubric (Local)",
        "0.1.1",
        "2026-08-06",
    )
    assert len(sig.statements) == 14 and len(integ.statements) == 6
    # the caches hold for the shipped rubrics only (see rubrics.signal_input)
    assert sig.sha256 == rubrics.SIGNALS_SHA256 and integ.sha256 == rubrics.INTEGRITY_SHA256


@pytest.fixture(autouse=True)
def _signal_input_reads_what_the_rubric_reads(monkeypatch):
    """In every test here, each node the signals rubric evaluates gets the same traits from
    its whole manifest as from the small input the cache keys on."""
    from deepaudit.audit import rubrics

    real = rubrics.signal_input
    checked: list[int] = []

    def checking(data):
        small = real(data)
        if small is not None:
            rubric = load_rubric("signals")
            assert rubrics._node_traits(rubric, data, 0) == rubrics._node_traits(rubric, small, 0)
            checked.append(1)
        return small

    real_integrity = rubrics.integrity_input

    def checking_integrity(results):
        small = real_integrity(results)
        if small is not None:
            rubric = load_rubric("integrity")
            whole = rubrics._integrity_checks(rubric, results)
            assert rubrics._integrity_checks(rubric, small) == whole
        return small

    monkeypatch.setattr(rubrics, "signal_input", checking)
    monkeypatch.setattr(rubrics, "integrity_input", checking_integrity)
    # no trait or check from an earlier test's cache
    monkeypatch.setattr(rubrics, "_TRAITS", {})
    monkeypatch.setattr(rubrics, "_CHECKS", {})
    yield


@pytest.mark.parametrize(
    "node",
    [
        {},
        {"assertions": {}},
        {"assertions": {"c2pa.actions.v2": {"actions": []}}},
        {"assertions": {"c2pa.actions.v2": {"allActionsIncluded": False, "actions": []}}},
        {"assertions": {"c2pa.actions.v2": {"allActionsIncluded": True}}},
        {
            "assertions": {
                "c2pa.actions.v2": {
                    "allActionsIncluded": True,
                    "actions": [
                        {"action": "c2pa.opened", "digitalSourceType": IPTC + "digitalCapture"},
                        {
                            "action": "c2pa.edited",
                            "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                        },
                        {"action": "com.example.filter", "when": "2026-01-01"},
                        {"action": "c2pa.unknown"},
                        {"action": "c2pa.resized", "parameters": {"x": 1}},
                        {"digitalSourceType": IPTC + "screenCapture"},
                    ],
                }
            },
            "claim.v2": {
                "gathered_assertions": [
                    {"url": "self#jumbf=c2pa.assertions/c2pa.actions.v2", "hash": "x"}
                ]
            },
        },
        {"assertions": {"c2pa.ingredient.v3": {"relationship": "parentOf"}}},
        {"assertions": {"c2pa.ingredient.v3": {"activeManifest": None}}},
        {"assertions": {"c2pa.ingredient.v3": {"activeManifest": {"url": "u", "hash": "h"}}}},
        {"claim.v2": {}},
        {"claim.v2": {"gathered_assertions": [{"hash": "no url"}]}},
        {"assertions": {"c2pa.actions.v2": {"actions": "not a list"}}},
        {"assertions": ["not", "a", "mapping"]},
    ],
)
def test_signal_input_gives_the_traits_of_the_whole_node(node):
    from deepaudit.audit import rubrics

    rubric = load_rubric("signals")
    whole = rubrics._node_traits(rubric, node, 0)
    small = rubrics.signal_input(node)  # the checking wrapper of the fixture, then compare
    if small is not None:
        assert rubrics._node_traits(rubric, small, 0) == whole
    # through signal_graph, cached or not, a node's traits are the whole node's
    cr = {"manifests": [{"label": "urn:c2pa:x", **node}]}
    for _ in range(2):  # the second time from the cache
        assert tuple(rubrics.signal_graph(cr, rubric)[0].traits) == whole


def test_integrity_rubric_on_validation_results():
    ok = integrity_checks({"success": [{"code": "claimSignature.validated"}], "failure": []})
    assert all(c.passed for c in ok)
    bad = integrity_checks(
        {"failure": [{"code": "assertion.dataHash.mismatch"}, {"code": "claim.missing"}]}
    )
    by = {c.trait: c for c in bad}
    assert by["validation:valid_success"].passed is False
    assert by["validation:valid_success"].report == (
        "Found validation mismatches: assertion.dataHash.mismatch"
    )
    assert by["validation:well_formed_success"].matches == ("claim.missing",)
    assert by["validation:trusted_success"].passed is True
    missing = {c.trait: c for c in integrity_checks(None)}
    assert missing["validation:valid_data_present"].passed is False
    assert missing["validation:valid_success"].matches == ("MISSING_VALIDATION_RESULTS",)
    # odd shapes: the second call of each comes from the cache, both as the whole input gives
    # (the fixture compares each small input with the whole)
    for results in ({}, {"failure": [{"explanation": "no code"}]}, {"informational": []}):
        assert integrity_checks(results) == integrity_checks(results)
    assert {c.trait: c.passed for c in integrity_checks({})}["validation:valid_success"] is False


# --------------------------------------------------------------------------- signed files


def _manifest(actions, *, complete=True, title="asset.png"):
    data = {"actions": actions}
    if complete:
        data["allActionsIncluded"] = True
    return {
        "claim_generator_info": [{"name": "deepaudit-tests", "version": "1"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions.v2", "data": data, "created": True}],
    }


def _sign(tmp_path, creds, photo, name, manifest, ingredients=()):
    """Sign a fresh PNG of the photo with ``manifest``; ``ingredients``: (json, path|None)."""
    import c2pa

    src = write_image(tmp_path / f"src-{name}", photo)
    out = tmp_path / name
    manifest = {**manifest, "title": name}
    builder = c2pa.Builder(manifest)
    for ing, path in ingredients:
        with open(path or src, "rb") as fh:
            builder.add_ingredient(ing, "image/png", fh)
    with open(src, "rb") as s, open(out, "w+b") as d:
        builder.sign(creds["signing"].signer(), "image/png", s, d)
    return out


def _created(dst):
    return [{"action": "c2pa.created", "digitalSourceType": dst}]


def _traits(rec, node=0):
    return {s["trait"].split("signal_")[1] for s in rec.to_json()["signals"] if s["node"] == node}


@pytest.mark.parametrize(
    ("dst", "trait", "declaration"),
    [
        (IPTC + "trainedAlgorithmicMedia", "fullyGenAIMedia", "ai-generated"),
        (IPTC + "compositeWithTrainedAlgorithmicMedia", "partlyGenAICreation", "ai-edited"),
        (IPTC + "composite", "compositionMayContainGenAI", "ai-edited"),
        (IPTC + "digitalCapture", "capturedMedia", "capture"),
        (IPTC + "computationalCapture", "capturedMedia", "capture"),
        (IPTC + "compositeCapture", "capturedMediaStitched", "capture"),
        (IPTC + "screenCapture", "screenCaptureMayContainGenAI", "may-contain-ai"),
        (IPTC + "digitalCreation", "nonGenAIDigitalCreation", "none"),
        ("http://c2pa.org/digitalsourcetype/empty", "blankCanvas", "none"),
    ],
)
def test_inception_signal_of_each_digital_source_type(
    tmp_path, creds, photo, dst, trait, declaration
):
    f = _sign(tmp_path, creds, photo, "a.png", _manifest(_created(dst)))
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    assert rec.state == "trusted"
    assert _traits(rec) == {trait}  # complete, created actions: nothing ambiguous
    assert rec.ai_declaration == declaration
    if declaration != "none":
        report = load_rubric("signals").statements
        text = next(s.text(True) for s in report if s.id.endswith("signal_" + trait))
        assert any(text in b for b in rec.declaration_basis)


def test_composite_synthetic_creation_gives_no_genai_signal(tmp_path, creds, photo):
    """Our round-1 taxonomy called this AI-edited; the rubric has no inception for it."""
    f = _sign(tmp_path, creds, photo, "a.png", _manifest(_created(IPTC + "compositeSynthetic")))
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    assert _traits(rec) == set() and rec.ai_declaration == "none"


def _edit_of(tmp_path, creds, photo, parent, edits, name):
    """``parent`` opened (its ingredient assertion) and edited by ``edits``, signed as ``name``."""
    opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
    ing = {"title": parent.name, "relationship": "parentOf", "label": "parent"}
    return _sign(tmp_path, creds, photo, name, _manifest([opened, *edits]), [(ing, parent)])


def _edit_of_capture(tmp_path, creds, photo, edits, name="edit.png"):
    cap = _sign(tmp_path, creds, photo, "cap.png", _manifest(_created(IPTC + "digitalCapture")))
    return _edit_of(tmp_path, creds, photo, cap, edits, name)


@pytest.mark.parametrize(
    ("edit", "trait", "declaration"),
    [
        (
            {"action": "c2pa.edited", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"},
            "perceptibleGenAI",
            "ai-edited",
        ),
        (
            {"action": "c2pa.edited", "digitalSourceType": IPTC + "compositeSynthetic"},
            "perceptibleGenAI",
            "ai-edited",
        ),
        (
            {"action": "c2pa.edited", "digitalSourceType": IPTC + "digitalArt"},
            # digitalArt is no GenAI type either: the rubric also says non-GenAI
            {"perceptiblePossiblyGenAI", "perceptibleNonGenAI"},
            "may-contain-ai",
        ),
        (
            {"action": "c2pa.color_adjustments", "digitalSourceType": IPTC + "digitalCreation"},
            "perceptibleNonGenAI",
            "capture",
        ),
        ({"action": "c2pa.resized.proportional"}, "nonEditorial", "capture"),
        ({"action": "com.example.sharpen"}, "ambiguousActions", "capture"),
    ],
)
def test_transformation_signals_of_an_opened_and_edited_capture(
    tmp_path, creds, photo, edit, trait, declaration
):
    f = _edit_of_capture(tmp_path, creds, photo, [edit])
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    assert _traits(rec) == (trait if isinstance(trait, set) else {trait})
    assert _traits(rec, node=1) == {"capturedMedia"}  # the ingredient, evaluated locally
    (ing,) = rec.ingredients
    assert [t.trait for t in ing.signals] == ["inception:signal_capturedMedia"]
    assert rec.ai_declaration == declaration
    graph = rec.rubric_json()["signals"]["manifests"]
    assert graph[0]["ingredients"] == [{"index": 1, "relationship": "parentOf"}]


def test_incomplete_actions_are_ambiguous(tmp_path, creds, photo):
    f = _sign(
        tmp_path,
        creds,
        photo,
        "a.png",
        _manifest(_created(IPTC + "digitalCapture"), complete=False),
    )
    rec = inspect_provenance(f)
    assert _traits(rec) == {"capturedMedia", "ambiguousActions"}


def _gathered(manifest):
    """The same actions, as a gathered assertion (not marked created)."""
    (a,) = manifest["assertions"]
    return {**manifest, "assertions": [{k: v for k, v in a.items() if k != "created"}]}


@pytest.mark.parametrize("repeat", [False, True])
def test_gathered_actions_are_ambiguous(tmp_path, creds, photo, repeat):
    """Actions among the gathered assertions are ambiguous, also beside a created actions
    assertion of the same label (``json()`` marks both instances created then; crJSON, which
    the rubrics read, tells them apart)."""
    captured = _manifest(_created(IPTC + "digitalCapture"))
    manifest = _gathered(captured)
    if repeat:  # a created edit beside the gathered capture
        edit = {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.edited"}]}}
        manifest["assertions"].append({**edit, "created": True})
    f = _sign(tmp_path, creds, photo, "g.png", manifest)
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    assert "ambiguousActions" in _traits(rec) and "capturedMedia" in _traits(rec)


def test_a_version_1_claim_is_read_as_the_rubric_reads_it(tmp_path, creds, photo):
    """A v1 claim has no ``claim.v2``: the rubric finds no complete-actions marker there."""
    actions = {"actions": _created(IPTC + "digitalCapture")}
    v1 = {
        "claim_version": 1,
        "claim_generator": "deepaudit-tests/1",
        "assertions": [{"label": "c2pa.actions", "data": actions}],
    }
    rec = inspect_provenance(_sign(tmp_path, creds, photo, "v1.png", v1), trust_anchors=creds["ca"])
    assert _traits(rec) == {"capturedMedia", "ambiguousActions"}


def test_ingredients_with_and_without_manifests(tmp_path, creds, photo):
    gen = _sign(
        tmp_path, creds, photo, "gen.png", _manifest(_created(IPTC + "trainedAlgorithmicMedia"))
    )
    plain = write_image(tmp_path / "plain.png", photo[:, ::-1].copy())
    placed = [{"action": "c2pa.created", "digitalSourceType": IPTC + "composite"}]
    f = _sign(
        tmp_path,
        creds,
        photo,
        "collage.png",
        _manifest(placed),
        [
            ({"title": "gen.png", "relationship": "componentOf"}, gen),
            ({"title": "plain.png", "relationship": "componentOf"}, plain),
        ],
    )
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    out = rec.rubric_json()["signals"]
    assert out["rubricName"] == "C2PA Asset Signals Rubric (Local)"
    nodes = out["manifests"]
    assert [t["trait"] for t in nodes[1]["localInceptions"]] == ["inception:signal_fullyGenAIMedia"]
    # the first ingredient assertion has a manifest: no unknown-provenance signal from it
    assert "compositionMayContainGenAI" in _traits(rec)
    assert rec.ai_declaration == "ai-edited"  # GenAI in an ingredient: contains AI
    assert "Contains Fully GenAI Media (gen.png)" in rec.declaration_basis


def test_a_flat_ingredient_declaring_a_source_type_is_a_pseudo_node(tmp_path, creds, photo):
    """c2pa-rs keeps no digitalSourceType on a v3 ingredient; the ``c2pa.opened`` action that
    brings a manifest-less ingredient in can carry it, and the graph gets a pseudo node."""
    plain = write_image(tmp_path / "plain.png", photo)
    opened = {
        "action": "c2pa.opened",
        "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
        "parameters": {"ingredientIds": ["p"]},
    }
    ing = {"title": "plain.png", "relationship": "parentOf", "label": "p"}
    f = _sign(tmp_path, creds, photo, "e.png", _manifest([opened]), [(ing, plain)])
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    nodes = rec.rubric_json()["signals"]["manifests"]
    assert len(nodes) == 2 and nodes[1].get("pseudo") is True
    assert [t["trait"] for t in nodes[1]["localInceptions"]] == ["inception:signal_fullyGenAIMedia"]
    assert nodes[0]["ingredients"] == [{"index": 1, "relationship": "parentOf"}]
    # an opened action with a source type is an inception of the active manifest too
    assert "fullyGenAIMedia" in _traits(rec) and rec.ai_declaration == "ai-generated"
    (flat,) = rec.ingredients
    assert [t.trait for t in flat.signals] == ["inception:signal_fullyGenAIMedia"]


def test_an_unknown_provenance_ingredient(tmp_path, creds, photo):
    plain = write_image(tmp_path / "plain.png", photo)
    f = _edit_of(tmp_path, creds, photo, plain, [{"action": "c2pa.cropped"}], "e.png")
    assert "mediaUnknownProvenance" in _traits(inspect_provenance(f))


# --------------------------------------------------------------------------- verdicts


def test_verdicts_follow_the_signals_and_quote_the_rubric(tmp_path, creds, photo):
    def verdict(path):
        prov = inspect_provenance(path, trust_anchors=creds["ca"]).to_json()
        return decide(prov, None, None, {})

    gen = _sign(
        tmp_path, creds, photo, "g.png", _manifest(_created(IPTC + "trainedAlgorithmicMedia"))
    )
    v, reasons = verdict(gen)
    assert v == "synthetic" and "Contains Fully GenAI Media" in reasons[0].text
    edited = _edit_of_capture(
        tmp_path,
        creds,
        photo,
        [{"action": "c2pa.edited", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}],
    )
    v, reasons = verdict(edited)
    assert v == "synthetic" and "AI-edited or containing AI" in reasons[0].text
    assert "Contains Perceptible GenAI Transformations" in reasons[0].text
    screen = _sign(tmp_path, creds, photo, "s.png", _manifest(_created(IPTC + "screenCapture")))
    v, reasons = verdict(screen)
    assert v == "no-evidence" and "may contain AI" in reasons[0].text
    cap = _sign(tmp_path, creds, photo, "c.png", _manifest(_created(IPTC + "digitalCapture")))
    v, reasons = verdict(cap)
    assert v == "likely-authentic" and "Contains Captured Media" in reasons[0].text


def test_integrity_is_reported_for_the_active_manifest_and_each_ingredient(tmp_path, creds, photo):
    f = _edit_of_capture(tmp_path, creds, photo, [{"action": "c2pa.cropped"}])
    rec = inspect_provenance(f, trust_anchors=creds["ca"])
    js = rec.to_json()
    assert {c["trait"]: c["value"] for c in js["integrity"]}["validation:trusted_success"] is True
    assert js["ingredients"][0]["integrity"]  # the ingredient's recorded validation, evaluated
    out = rec.rubric_json()["integrity"]
    assert out["rubricName"] == "C2PA Asset Integrity Rubric"
    assert [m["active"] for m in out["manifests"]] == [True, False]
    untrusted = inspect_provenance(f).to_json()
    failed = [c["reportText"] for c in untrusted["integrity"] if c["value"] is False]
    assert failed == ["Found trust failures: signingCredential.untrusted"]
    json.dumps(js)  # the record stays JSON


def test_a_tampered_grandparent_makes_the_file_invalid(tmp_path, creds, photo):
    """A fault two ingredients down is c2pa's too: the record is invalid, as json() says
    (crJSON files that delta under the middle manifest, not the active one)."""
    edited = [{"action": "c2pa.edited"}]
    mid = _edit_of_capture(tmp_path, creds, photo, edited, name="mid.png")
    top = _edit_of(tmp_path, creds, photo, mid, edited, "top.png")
    assert inspect_provenance(top, trust_anchors=creds["ca"]).state == "trusted"
    data = top.read_bytes()
    assert data.count(b"digitalCapture") == 1  # in the grandparent's manifest only
    bad = tmp_path / "bad.png"
    bad.write_bytes(data.replace(b"digitalCapture", b"digitalCaptura"))
    rec = inspect_provenance(bad, trust_anchors=creds["ca"])
    assert rec.state == "invalid" and "ingredient.manifest.mismatch" in rec.reason
