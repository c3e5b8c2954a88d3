"""``deepaudit review``: a local web app over a scan, for an analyst (FastAPI + uvicorn).

Safety, because a browser is a program any web page can talk to:

- it binds 127.0.0.1 only, and answers only requests whose Host is 127.0.0.1 or
  localhost (a DNS-rebinding page cannot reach it under another name);
- every request needs the random token the URL carries (403 without it, or with a
  wrong one); pages are sent with ``Referrer-Policy: no-referrer`` so it does not leak;
- a request that changes state also needs the page's CSRF token in a header, a JSON
  body, and, where the browser says where it came from, the app's own origin;
- files are addressed by their place in the queue, never by a path: only files listed in
  the scan's results are served, decoded and re-encoded as PNG, and only while their
  bytes match the scan's sha256;
- it writes ``feedback.jsonl`` and ``review-heatmaps/`` in the scan folder and nothing else.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from deepaudit.audit.feedback import FEEDBACK_LABELS, FeedbackError
from deepaudit.audit.review import ReviewQueue, StaleFileError
from deepaudit.audit.review_page import render_page
from deepaudit.errors import MediaError

__all__ = ["ReviewServer", "create_app"]

ALLOWED_HOSTS = ("127.0.0.1", "localhost")
SAFE_METHODS = frozenset({"GET", "HEAD"})
SHOWN = (
    "path",
    "kind",
    "format",
    "verdict",
    "reasons",
    "scores",
    "fused",
    "provenance",
    "metadata",
    "watermark",
    "error",
    "width",
    "height",
    "fps",
    "frames_sampled",
    "sha256",
)


def create_app(queue: ReviewQueue, *, token: str, csrf: str) -> FastAPI:
    """The review app over ``queue``; ``token`` opens it, ``csrf`` guards its writes."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        given = request.query_params.get("token") or request.headers.get("x-review-token", "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return _forbidden("a wrong or missing token: open the URL deepaudit review printed")
        if request.method not in SAFE_METHODS:
            problem = _csrf_problem(request, csrf)
            if problem:
                return _forbidden(problem)
        response = await call_next(request)
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(ALLOWED_HOSTS))

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        body = render_page(
            token=token,
            csrf=csrf,
            nonce=nonce,
            scan=str(queue.scan_dir),
            labels=FEEDBACK_LABELS,
            reviewer=queue.reviewer,
        )
        csp = (
            f"default-src 'none'; img-src 'self' data:; style-src 'nonce-{nonce}'; "
            f"script-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        return HTMLResponse(body, headers={"Content-Security-Policy": csp})

    @app.get("/api/queue")
    def queue_list() -> dict[str, Any]:
        decided = queue.decisions()
        return {
            "scan": str(queue.scan_dir),
            "reviewer": queue.reviewer,
            "detectors": queue.detector_names(),
            "files": [
                {
                    "index": e.index,
                    "path": e.path,
                    "verdict": e.record.get("verdict", "error"),
                    "kind": e.record.get("kind"),
                    "flagged": e.flagged,
                    "label": decided[e.path].label if e.path in decided else None,
                }
                for e in queue.entries
            ],
        }

    @app.get("/api/item/{index}")
    def item(index: int) -> dict[str, Any]:
        e = _entry(queue, index)
        decided = queue.decisions().get(e.path)
        thresholds = {
            n: d.get("threshold") for n, d in (queue.summary.get("detectors") or {}).items()
        }
        frames, heatmaps, problem = 0, [], None
        if "error" in e.record:
            problem = f"unreadable when scanned: {e.record['error'].get('message')}"
        else:
            try:
                if e.record.get("kind") == "video":
                    frames = len(queue.frames(index))
                else:
                    queue.checked_path(index)
                heatmaps = queue.heatmap_detectors(index)
            except (StaleFileError, MediaError) as exc:
                problem = str(exc)
        return {
            "index": index,
            "flagged": e.flagged,
            "record": {k: e.record[k] for k in SHOWN if k in e.record},
            "thresholds": thresholds,
            "frames": frames,
            "heatmaps": heatmaps,
            "media_problem": problem,
            "decision": decided.to_json() if decided else None,
        }

    @app.get("/media/{index}/thumb")
    def thumb(index: int) -> Response:
        _entry(queue, index)
        return Response(queue.thumbnail(index), media_type="image/png")

    @app.get("/media/{index}/frame/{k}")
    def frame(index: int, k: int) -> Response:
        _entry(queue, index)
        frames = queue.frames(index)
        if not 0 <= k < len(frames):
            return JSONResponse({"detail": f"no frame {k}"}, status_code=404)
        return Response(frames[k], media_type="image/png")

    @app.get("/media/{index}/heatmap/{detector}")
    def heatmap(index: int, detector: str) -> Response:
        _entry(queue, index)
        try:
            return FileResponse(queue.heatmap(index, detector), media_type="image/png")
        except KeyError:
            return JSONResponse({"detail": f"no heatmap from {detector!r}"}, status_code=404)

    @app.post("/api/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise FeedbackError("the request body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("index"), int):
            raise FeedbackError("give the file's index, a label and a note")
        _entry(queue, body["index"])
        rec = queue.decide(body["index"], str(body.get("label")), str(body.get("note") or ""))
        return rec.to_json()

    @app.exception_handler(IndexError)
    async def not_listed(_r: Request, exc: IndexError) -> JSONResponse:
        return JSONResponse({"detail": f"no file {exc} in this scan's queue"}, status_code=404)

    @app.exception_handler(StaleFileError)
    async def stale(_r: Request, exc: StaleFileError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(MediaError)
    async def unreadable(_r: Request, exc: MediaError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(FeedbackError)
    async def bad_feedback(_r: Request, exc: FeedbackError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app


def _entry(queue: ReviewQueue, index: int) -> Any:
    return queue.entry(index)  # IndexError → 404: only listed files exist here


def _forbidden(reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=403)


def _csrf_problem(request: Request, csrf: str) -> str | None:
    """Why a state-changing request may not come from this app's own page, or None."""
    given = request.headers.get("x-csrf-token", "")
    if not secrets.compare_digest(given.encode(), csrf.encode()):
        return "a missing or wrong CSRF token"
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return "state changes take a JSON body"
    origin = request.headers.get("origin")
    if origin is not None and origin != f"http://{request.headers.get('host')}":
        return f"a request from another origin ({origin})"
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "a cross-site request"
    return None


class ReviewServer:
    """uvicorn serving :func:`create_app` on 127.0.0.1 (port 0: a free one)."""

    def __init__(self, queue: ReviewQueue, *, port: int = 0) -> None:
        import uvicorn

        self.token = secrets.token_urlsafe(24)
        self.csrf = secrets.token_urlsafe(24)
        self.app = create_app(queue, token=self.token, csrf=self.csrf)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        self.server.run(sockets=[self.socket])

    def start(self) -> ReviewServer:
        """Serve in a background thread (tests, notebooks); :meth:`stop` ends it."""
        import time

        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()
