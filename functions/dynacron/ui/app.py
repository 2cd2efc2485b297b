"""``dynacron ui``: a small web dashboard over a ``Scheduler`` (Starlette + Jinja2).

Pages are rendered on the server; the only "front end" is HTML, a little CSS and an inline
SVG chart, so there is no JavaScript build step. It reads through the same SDK calls as the
CLI (``list``, ``runs``, ``stats``, ``dead_letters``) and writes only through ``redrive`` and
``redrive_all``, each a POST that carries a CSRF token; ``read_only`` removes the buttons and
refuses every POST.

CSRF: a random cookie (``HttpOnly``, ``SameSite=Strict``) is set on the first page; each form
carries ``HMAC(app secret, cookie)``. A POST is accepted only with both and a matching MAC, and
(when the browser sends one) an ``Origin`` naming this host. Another site can neither read the
cookie nor compute the MAC. There is no login: the dashboard listens on 127.0.0.1 by default
and has the powers of the credentials it was started with.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..errors import DynacronError, InvalidStateError, RunNotFound, TaskNotFound
from ..types import TaskStatus
from .chart import lateness_svg

CSRF_COOKIE = "dynacron_csrf"
RUNS_SHOWN = 100
TEMPLATES = Path(__file__).parent / "templates"


class _Csrf:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def token(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, token: object) -> bool:
        """``token`` is the form's field: missing, or a file upload, it is no token."""
        if not cookie or not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(self.token(cookie), token)


def create_app(
    scheduler: Any, *, read_only: bool = False, secret: bytes | None = None, debug: bool = False
) -> Starlette:
    """The dashboard's ASGI app over ``scheduler`` (any ``dynacron.Scheduler``)."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["when"] = _when
    templates.env.globals["zone_of"] = _zone_of
    templates.env.globals["outcome"] = run_outcome
    csrf = _Csrf(secret or secrets.token_bytes(32))

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        context.update(
            read_only=read_only,
            csrf=csrf.token(cookie),
            message=request.query_params.get("msg"),
            now=scheduler.clock.now(),
        )
        response = templates.TemplateResponse(request, name, context, status_code=status_code)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict")
        return response

    async def guard(request: Request) -> tuple[dict[str, Any], Response | None]:
        """The form of an acceptable POST, or the refusal to send instead."""
        if read_only:
            return {}, PlainTextResponse("read-only dashboard: changes are disabled", 403)
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            return {}, PlainTextResponse("cross-origin request refused", 403)
        form = dict(await request.form())
        if not csrf.valid(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
            return {}, PlainTextResponse("missing or bad CSRF token: reload the page", 403)
        return form, None

    def tasks(request: Request) -> Response:
        status = request.query_params.get("status") or None
        task_type = request.query_params.get("type") or None
        text = (request.query_params.get("q") or "").strip()
        if status not in (None, *(s.value for s in TaskStatus)):
            status = None
        found = [
            t
            for t in scheduler.list(status=status, task_type=task_type)
            if text.lower() in t.task_id.lower() or text.lower() in t.task_type.lower()
        ]
        found.sort(key=lambda t: t.created_at, reverse=True)
        return page(
            request,
            "tasks.html",
            tasks=found,
            statuses=[s.value for s in TaskStatus],
            status=status or "",
            task_type=task_type or "",
            q=text,
        )

    def task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            found = scheduler.get(task_id)
        except TaskNotFound as exc:
            return page(request, "error.html", status_code=404, error=str(exc))
        runs = scheduler.runs(task_id, limit=RUNS_SHOWN)
        return page(request, "task.html", task=found, runs=runs, chart=lateness_svg(runs))

    def dlq(request: Request) -> Response:
        try:
            letters = scheduler.dead_letters()
        except DynacronError as exc:
            return page(request, "error.html", status_code=503, error=str(exc))
        return page(request, "dlq.html", letters=letters)

    def stats(request: Request) -> Response:
        return page(request, "stats.html", stats=scheduler.stats())

    async def redrive(request: Request) -> Response:
        form, refusal = await guard(request)
        if refusal is not None:
            return refusal
        task_id, run_id = str(form.get("task_id", "")), str(form.get("run_id", ""))
        try:
            run = scheduler.redrive(task_id, run_id)
        except (TaskNotFound, RunNotFound, InvalidStateError) as exc:
            return _back(f"not redriven: {exc}")
        return _back(f"redriven {task_id} / {run_id}: run is {run.status.value}")

    async def redrive_all(request: Request) -> Response:
        _, refusal = await guard(request)
        if refusal is not None:
            return refusal
        results = scheduler.redrive_all()
        done = sum(r.outcome == "redriven" for r in results)
        left = sum(r.outcome == "left" for r in results)
        return _back(f"redriven {done}, left {left}")

    routes = [
        Route("/", tasks),
        Route("/tasks/{task_id:path}", task),
        Route("/dlq", dlq),
        Route("/dlq/redrive", redrive, methods=["POST"]),
        Route("/dlq/redrive-all", redrive_all, methods=["POST"]),
        Route("/stats", stats),
    ]
    return Starlette(debug=debug, routes=routes)


def _back(message: str) -> Response:
    return RedirectResponse(f"/dlq?msg={quote(message)}", status_code=303)


def _zone_of(task: Any) -> Any:
    from ..cli_tables import task_zone

    return task_zone(task)


def run_outcome(run: Any) -> str:
    """What a run table shows of a run's end: its result once succeeded, else its last error
    (a retried run that succeeded still carries the error of the attempt that failed)."""
    import json

    if run.status.value == "succeeded" and run.result is not None:
        return json.dumps(run.result, ensure_ascii=False, separators=(",", ":"))
    if run.error:
        return str(run.error)
    return "" if run.result is None else json.dumps(run.result, ensure_ascii=False)


def _when(value: Any, zone: Any = None) -> str:
    """A datetime as ``2026-03-02 13:00:00 CET`` in ``zone`` (UTC by default)."""
    from datetime import UTC

    from ..cli_tables import when

    return when(value, zone or UTC, with_zone=True)
