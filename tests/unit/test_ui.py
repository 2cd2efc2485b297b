"""The dashboard's pages and its POSTs (CSRF, read-only), through Starlette's test client."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

import dynacron.testing
from dynacron import At, Cron, RetryPolicy, handler
from dynacron.ui.app import CSRF_COOKIE, create_app

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
state = {"fail": True}


@handler("ui-job")
def _job(payload: dict, ctx) -> dict:
    if state["fail"]:
        raise RuntimeError("printer on fire")
    return {"pages": 3}


@pytest.fixture
def env():
    state["fail"] = True
    with dynacron.testing.local(start=T0) as e:
        s = e.scheduler
        s.schedule("ui-job", {}, trigger=Cron("0 9 * * *", tz="Europe/Berlin"), task_id="daily")
        s.schedule("ui-job", {}, trigger=At(T0), task_id="once", retry=RetryPolicy(max_attempts=1))
        e.advance(timedelta(minutes=1))
        yield e


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_tasks_page_lists_and_filters(env):
    client = TestClient(create_app(env.scheduler))
    page = client.get("/").text
    assert "daily" in page and "once" in page and "2 tasks" in page
    from html import escape

    from dynacron import Cron

    assert escape(Cron("0 9 * * *", tz="Europe/Berlin").describe()) in page
    only = client.get("/", params={"status": "completed"}).text
    assert "once" in only and "/tasks/daily" not in only
    assert "/tasks/once" not in client.get("/", params={"q": "dai"}).text


def test_task_page_has_runs_and_a_lateness_chart(env):
    client = TestClient(create_app(env.scheduler))
    page = client.get("/tasks/once").text
    assert "printer on fire" in page and "dead" in page and "<svg" in page
    assert 'class="bar dead"' in page
    assert client.get("/tasks/nope").status_code == 404


def test_redrive_needs_the_csrf_token_and_then_works(env):
    client = TestClient(create_app(env.scheduler))
    page = client.get("/dlq").text
    assert "1 message on the dead-letter queue" in page and "printer on fire" in page
    run_id = env.scheduler.runs("once")[0].run_id
    form = {"task_id": "once", "run_id": run_id}
    assert client.post("/dlq/redrive", data=form).status_code == 403  # no token
    assert client.post("/dlq/redrive", data={**form, "csrf": "0" * 64}).status_code == 403
    token = _csrf(page)
    cross = client.post(
        "/dlq/redrive", data={**form, "csrf": token}, headers={"origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    other = TestClient(create_app(env.scheduler))  # another cookie: the token is not its own
    other.get("/")
    assert other.post("/dlq/redrive", data={**form, "csrf": token}).status_code == 403

    state["fail"] = False
    done = client.post("/dlq/redrive", data={**form, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    assert "redriven once" in client.get(done.headers["location"]).text
    assert env.scheduler.dead_letters() == []
    [run] = env.advance(1)
    assert run.status == "succeeded"


def test_read_only_has_no_buttons_and_refuses_posts(env):
    client = TestClient(create_app(env.scheduler, read_only=True))
    page = client.get("/dlq").text
    assert "read-only" in page and "Redrive" not in page and 'name="csrf"' not in page
    cookie = client.cookies.get(CSRF_COOKIE)
    assert cookie
    assert client.post("/dlq/redrive-all", data={}).status_code == 403
    assert len(env.scheduler.dead_letters()) == 1


def test_stats_page(env):
    page = TestClient(create_app(env.scheduler)).get("/stats").text
    assert "dead" in page and "DLQ" in page and "Oldest overdue run" in page
