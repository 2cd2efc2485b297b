"""``dynacron ui`` in a real headless browser: Debian's chromium driven by selenium.

The dashboard serves a ``dynacron.testing`` deployment (a scheduled cron task with a history,
a run that went dead) from a real uvicorn server on loopback. The browser loads each page,
finds the task and the dead run, presses Redrive, and sees the run revived. Screenshots of the
pages are written to ``docs/`` (the README shows one). No browser is downloaded: chromium and
chromedriver come from Debian (``make install`` installs them when missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dynacron.testing
from dynacron import At, Cron, Every, RetryPolicy, handler
from helpers.screenshots import screenshot_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHOTS = screenshot_dir()
T0 = datetime(2026, 6, 1, 6, 0, 0, tzinfo=UTC)
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,820",
)
mode = {"fail": True}


@handler("nightly-report")
def _report(payload: dict, ctx) -> dict:
    if ctx.attempt == 1 and ctx.scheduled_for.day % 4 == 0:
        raise TimeoutError("warehouse busy")  # retried 2 s later (attempt 2)
    return {"rows": 100 + ctx.scheduled_for.day}


@handler("sync-crm")
def _sync(payload: dict, ctx) -> dict:
    if mode["fail"]:
        raise ConnectionError("crm.example.com:443 refused the connection")
    return {"synced": 42}


def _browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: `make install` installs them")
        pytest.skip("chromium/chromedriver not installed (make install installs them)")
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_paths()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def dashboard() -> Iterator[tuple[str, object]]:
    import uvicorn

    from dynacron.ui.app import create_app

    mode["fail"] = True
    with dynacron.testing.local(start=T0) as env:
        s = env.scheduler
        s.schedule("nightly-report", {"region": "emea"}, trigger=Cron("0 8 * * *",
                   tz="Europe/Berlin"), task_id="nightly-report")
        s.schedule("nightly-report", {}, trigger=Every(timedelta(hours=6)), task_id="digest")
        s.schedule("sync-crm", {}, trigger=At(T0 + timedelta(hours=1)), task_id="sync-crm",
                   retry=RetryPolicy(max_attempts=2, backoff_base=30, jitter=0))
        env.advance(timedelta(days=12))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(s), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            while not server.started:
                thread.join(0.05)
                assert thread.is_alive(), "the dashboard server did not start"
            yield f"http://127.0.0.1:{port}", env
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


def test_pages_show_the_task_and_the_dead_run_and_redrive_works(browser, dashboard):
    from selenium.webdriver.common.by import By

    url, env = dashboard
    SHOTS.mkdir(parents=True, exist_ok=True)

    browser.get(url + "/")
    tasks = browser.find_element(By.ID, "tasks").text
    from dynacron import Cron

    described = Cron("0 8 * * *", tz="Europe/Berlin").describe()
    assert "nightly-report" in tasks and described in tasks
    assert "sync-crm" in tasks
    browser.save_screenshot(str(SHOTS / "ui-tasks.png"))

    browser.find_element(By.LINK_TEXT, "nightly-report").click()
    assert browser.find_element(By.TAG_NAME, "h2").text == "nightly-report"
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
    assert len(bars) == 13  # one a day, 1 to 13 June at 08:00 Berlin, each started
    # 4, 8 and 12 June were retried 2 s later; lateness is the *first* attempt's, so they
    # are not late and every bar is as tall as the others.
    assert len({b.get_attribute("height") for b in bars}) == 1
    runs = browser.find_element(By.ID, "runs").text
    assert "succeeded" in runs and runs.count(" 2/3 ") == 3, runs
    browser.save_screenshot(str(SHOTS / "ui-task.png"))

    browser.get(url + "/dlq")
    dlq = browser.find_element(By.ID, "dlq").text
    assert "sync-crm" in dlq and "ConnectionError" in dlq
    browser.save_screenshot(str(SHOTS / "ui-dlq.png"))

    mode["fail"] = False  # the CRM is back: a redriven run will succeed
    browser.find_element(By.CSS_SELECTOR, "button.redrive").click()
    assert "redriven sync-crm" in browser.find_element(By.ID, "message").text
    assert "the dead-letter queue is empty" in browser.find_element(By.ID, "dlq").text
    [run] = env.advance(1)
    assert (run.task_id, run.status, run.result) == ("sync-crm", "succeeded", {"synced": 42})

    browser.get(url + "/stats")
    assert "succeeded" in browser.find_element(By.ID, "stats").text
