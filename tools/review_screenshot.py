"""Screenshot the review app for the docs (docs/review.png), in headless chromium.

``python tools/review_screenshot.py SCAN_DIR docs/review.png [--decide 3] [--file NAME]``

Works on a copy of SCAN_DIR, so the scan's own ``feedback.jsonl`` is untouched: decides
the first ``--decide`` files with the keyboard (real, synthetic, unsure: the queue shows
the marks), then opens the first file whose name contains ``--file`` (default: the next
one) and takes a full-page screenshot. Needs the ``review`` and ``browser`` extras and
Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scan_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--decide", type=int, default=3)
    parser.add_argument("--file", default=None, help="open the first file whose name has this")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from deepaudit.audit.review import ReviewQueue
    from deepaudit.audit.review_app import ReviewServer

    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "scan"
        shutil.copytree(args.scan_dir, scan, ignore=shutil.ignore_patterns("feedback.jsonl"))
        queue = ReviewQueue(scan, reviewer="analyst")
        server = ReviewServer(queue).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.set_default_timeout(180_000)  # heatmaps take seconds each on a CPU
                page.goto(server.url)
                page.wait_for_selector("body[data-shown='0']", state="attached")
                for n, key in zip(range(args.decide), "rsu" * args.decide, strict=False):
                    page.keyboard.press(key)
                    page.wait_for_selector(f"body[data-saved='{n + 1}']", state="attached")
                if args.file:
                    index = next(e.index for e in queue.entries if args.file in Path(e.path).name)
                    page.click(f"#list li[data-index='{index}']")
                    page.wait_for_selector(f"body[data-shown='{index}']", state="attached")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(args.out), full_page=False)
                browser.close()
        finally:
            server.stop()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
