"""AI-generation metadata written by the tests the way generator front-ends write it."""

from __future__ import annotations

import json

import pytest
from PIL import Image, PngImagePlugin

from deepaudit.audit.metadata import parse_a1111_parameters, parse_comfyui_prompt, read_ai_metadata

A1111 = (
    "a photo of an astronaut riding a horse, highly detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'Lora hashes: "detail: 1a2b, style: 3c4d", Version: v1.9.4'
)
COMFY = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "model": ["4", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a red fox in snow", "clip": ["4", 1]},
    },
}
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    "Iptc4xmpExt:DigitalSourceType="
    '"http://cv.iptc.org/newscodes/digitalsourcetype/{value}"/></rdf:RDF></x:xmpmeta>'
)


def test_parse_a1111():
    p = parse_a1111_parameters(A1111)
    assert p["prompt"].startswith("a photo of an astronaut")
    assert p["negative_prompt"] == "blurry, lowres"
    assert (p["steps"], p["sampler"], p["guidance"], p["seed"]) == (28, "DPM++ 2M", 6.5, 1234567)
    assert p["model"] == "v1-5-pruned-emaonly" and p["scheduler"] == "Karras"
    assert parse_a1111_parameters("just a caption") is None


def test_parse_comfyui():
    p = parse_comfyui_prompt(json.dumps(COMFY))
    assert p["models"] == ["sd_xl_base_1.0.safetensors"]
    assert p["samplers"] == [
        {"seed": 42, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal"}
    ]
    assert p["prompts"] == ["a red fox in snow"]
    assert parse_comfyui_prompt("not json") is None


def _png(path, photo, **chunks):
    info = PngImagePlugin.PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)
    Image.fromarray(photo).save(path, pnginfo=info)
    return path


def test_png_chunks(tmp_path, photo):
    r = read_ai_metadata(_png(tmp_path / "a.png", photo, parameters=A1111))
    assert r.declares_ai and [s.kind for s in r.signals] == ["a1111-parameters"]
    assert r.signals[0].details["seed"] == 1234567 and r.signals[0].strength == "strong"
    r = read_ai_metadata(
        _png(tmp_path / "c.png", photo, prompt=json.dumps(COMFY), workflow='{"nodes": []}')
    )
    assert {s.kind for s in r.signals} == {"comfyui-prompt", "comfyui-workflow"}
    r = read_ai_metadata(_png(tmp_path / "plain.png", photo, Title="holiday"))
    assert not r.signals and not r.declares_ai


@pytest.mark.parametrize(
    ("value", "claim", "declares_ai"),
    [
        ("trainedAlgorithmicMedia", "ai-generated", True),
        ("compositeWithTrainedAlgorithmicMedia", "ai-edited", True),
        ("digitalCapture", "capture", False),
    ],
)
def test_xmp_digital_source_type(tmp_path, photo, value, claim, declares_ai):
    path = tmp_path / "x.jpg"
    Image.fromarray(photo).save(path, xmp=XMP.format(value=value).encode())
    r = read_ai_metadata(path)
    assert [(s.kind, s.claim) for s in r.signals] == [("iptc-digital-source-type", claim)]
    assert r.declares_ai is declares_ai


def test_exif_fields(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly"
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    path = tmp_path / "e.jpg"
    Image.fromarray(photo).save(path, exif=exif)
    r = read_ai_metadata(path)
    kinds = {s.kind: s for s in r.signals}
    assert kinds["exif-generator-name"].strength == "weak"
    assert kinds["exif-camera"].claim == "capture"
    assert (
        not r.declares_ai and r.claims_capture
    )  # a weak Software string alone is not a declaration


def test_a1111_in_jpeg_user_comment(tmp_path, photo):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    path = tmp_path / "u.jpg"
    Image.fromarray(photo).save(path, exif=exif)
    r = read_ai_metadata(path)
    assert [s.field for s in r.signals] == ["exif:UserComment"] and r.declares_ai


def test_video_has_no_image_metadata(tmp_path, clip):
    from deepaudit.media import write_video

    path = write_video(tmp_path / "v.mp4", clip, fps=12).path
    assert read_ai_metadata(path).signals == ()
