"""The dashboard in a real browser (headless Chromium) against a real cluster: the page shows
the workers and the topology, starts a job that reaches 100% with its checks green, shows a
killed worker gone (a mark on the chart), refuses a wrong token, and says when its stream of
updates stops. The tests run in this order on one cluster (the kill comes last)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from browser import SHOTS, Dashboard, start_dashboard, wait_for
from e2e_harness import REPO, Up

from orchestrate import labels

PAGE = 60  # seconds for the page to show what the cluster already is
JOB = 240  # seconds for a job of 300 square tasks on three workers, checks included
README_SHOT = REPO / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def dashboard(dash_cluster: Up, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    assert dash_cluster.code == 0, dash_cluster.stderr[-3000:]
    work = tmp_path_factory.mktemp("dashboard")
    dash = start_dashboard(dash_cluster.file, dash_cluster.state, work, "--poll", "0.5")
    try:
        yield dash
    finally:
        dash.stop()
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(dash.log, SHOTS / "dashboard-server.log")


def _open(browser: Any, dash: Dashboard, token: str | None = None) -> None:
    browser.get("about:blank")  # a new document: from the page, a new fragment loads none
    browser.get(dash.url(token))
    wait_for("the page to be live", lambda: _text(browser, "live") == "live", PAGE)


def _text(browser: Any, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent")


def _rows(browser: Any) -> dict[str, dict[str, str]]:
    """The workers table as the page shows it: name -> column -> text."""
    return browser.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll('#workers tbody tr')) {
          out[tr.dataset.worker] = {state: tr.dataset.state,
            python: tr.querySelector('.python').textContent,
            tasks: tr.querySelector('.tasks').textContent};
        }
        return out;""")


def _checks(browser: Any) -> dict[str, str]:
    return browser.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll('#checks tbody tr'))
          out[tr.dataset.check] = tr.dataset.status;
        return out;""")


def test_the_page_shows_the_workers_and_the_topology(browser: Any, dashboard: Dashboard) -> None:
    _open(browser, dashboard)
    assert "#token" not in browser.current_url  # the token left the address bar
    names = ["e2e-dash-alpha-0", "e2e-dash-alpha-1", "e2e-dash-beta-0"]
    rows = wait_for(
        "three connected workers",
        lambda: (
            (r := _rows(browser)) and all(r.get(n, {}).get("state") == "idle" for n in names) and r
        ),
        PAGE,
    )
    assert list(rows) == names
    for row in rows.values():  # what each worker reported of itself
        assert re.fullmatch(r"3\.\d+\.\d+", row["python"]), row
    assert _text(browser, "health") == "up"
    # the topology, drawn by Cytoscape.js from orchestrate graph's picture, with addresses
    nodes = browser.execute_script(
        "return dashboard.cy.nodes().map(n => [n.id(), n.data('label'), n.visible()])"
    )
    ids = {n[0] for n in nodes}
    assert ids == {"e2e-dash-master", "net:net-a", "net:net-b", *names}
    assert all(visible for *_, visible in nodes)
    labels_by_id = {n[0]: n[1] for n in nodes}
    assert re.search(r"198\.18\.141\.\d+ \(net-a\)", labels_by_id["e2e-dash-master"])
    assert re.search(r"198\.18\.142\.\d+ \(net-b\)", labels_by_id["e2e-dash-beta-0"])
    edges = browser.execute_script("return dashboard.cy.edges().length")
    assert edges == 2 + 3  # the master on two networks, each worker on one


def test_a_job_started_from_the_page_reaches_100_and_its_checks_pass(
    browser: Any, dashboard: Dashboard
) -> None:
    _open(browser, dashboard)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "f-kind")).select_by_value("cpu")
    tasks = browser.find_element(By.ID, "f-tasks")
    tasks.clear()
    tasks.send_keys("300")
    browser.find_element(By.ID, "f-size").send_keys("20000")
    Select(browser.find_element(By.ID, "f-protocol")).select_by_value("leased")
    browser.find_element(By.ID, "start-job").click()
    wait_for(
        "the job to start",
        lambda: "running" in _text(browser, "job-id") or "ended" in _text(browser, "job-id"),
        30,
    )
    assert _text(browser, "action-error") == ""
    wait_for(
        "the progress bar at 100%",
        lambda: (
            browser.execute_script("return document.getElementById('progress').dataset.pct")
            == "100"
        ),
        JOB,
    )
    assert re.fullmatch(r"300/300 \(100%\)", _text(browser, "progress-text"))
    checks = wait_for(
        "the job's checks",
        lambda: "from the dashboard" in _text(browser, "checks-source") and _checks(browser),
        JOB,
    )
    assert checks.get("tasks_answered_once") == "pass", checks
    assert checks.get("results_crossed_the_network") == "pass", checks
    assert checks.get("every_worker_contributed") == "pass", checks
    assert "fail" not in checks.values(), checks
    snap = browser.execute_script("return dashboard.snapshot")
    assert snap["job"]["spec"]["kind"] == "cpu" and snap["job"]["ok"] == 300
    assert len(snap["series"]["t"]) >= 1  # the throughput chart has points
    assert sum(int(r["tasks"]) for r in _rows(browser).values()) == 300
    # the README's screenshot: the page after a job, as a person sees it
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "dashboard.png"))
    if os.environ.get("DISTPROC_UPDATE_SCREENSHOT"):
        README_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(SHOTS / "dashboard.png", README_SHOT)


def test_a_wrong_token_is_refused(browser: Any, dashboard: Dashboard) -> None:
    browser.get(dashboard.origin + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get("about:blank")
    browser.get(dashboard.url("not-the-token-at-all"))
    wait_for("the refusal", lambda: "refused" in _text(browser, "login-error"), PAGE)
    assert browser.execute_script("return document.getElementById('main').hidden")
    request = urllib.request.Request(
        dashboard.origin + "/api/job",
        data=json.dumps({"tasks": 5}).encode(),
        headers={"X-Distproc-Token": "not-the-token-at-all", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_a_stopped_stream_shows_on_the_page(browser: Any, dashboard: Dashboard) -> None:
    """The page counts on an update a second: when none comes, it says so (the server is
    stopped with SIGSTOP, then let go)."""
    _open(browser, dashboard)
    os.kill(dashboard.proc.pid, signal.SIGSTOP)
    try:
        stale = wait_for(
            "the page to say its updates stopped",
            lambda: "no update for" in (t := _text(browser, "live")) and t,
            15,
        )
        assert browser.execute_script("return document.getElementById('live').dataset.live") == (
            "stale"
        ), stale
    finally:
        os.kill(dashboard.proc.pid, signal.SIGCONT)
    wait_for("the page to be live again", lambda: _text(browser, "live") == "live", PAGE)


def test_a_killed_worker_is_shown_gone_with_a_mark(browser: Any, dashboard: Dashboard) -> None:
    _open(browser, dashboard)
    marks = int(browser.execute_script("return document.getElementById('chart').dataset.marks"))
    client = docker.from_env()
    victim = client.containers.list(
        filters={**labels.cluster_filter("e2e-dash"), "name": "e2e-dash-beta-0"}
    )
    assert len(victim) == 1
    client.api.kill(victim[0].id)  # by the container's id, as the test created nothing else
    wait_for(
        "e2e-dash-beta-0 gone",
        lambda: _rows(browser).get("e2e-dash-beta-0", {}).get("state") == "gone",
        PAGE,
    )
    assert _text(browser, "health") == "partly up"
    assert "e2e-dash-beta-0" in _text(browser, "health-detail")
    events = wait_for("the event", lambda: "e2e-dash-beta-0 gone" in _text(browser, "events")
                      and _text(browser, "events"), 10)  # fmt: skip
    assert "exited" in events
    wait_for(
        "one more mark on the chart",
        lambda: (
            int(browser.execute_script("return document.getElementById('chart').dataset.marks"))
            > marks
        ),
        10,
    )
    others = _rows(browser)
    assert others["e2e-dash-alpha-0"]["state"] in ("idle", "working"), others


def test_the_screenshot_exists(dashboard: Dashboard) -> None:
    """The README shows the screenshot the job test took (docs/dashboard.png, copied there
    with DISTPROC_UPDATE_SCREENSHOT=1)."""
    assert (SHOTS / "dashboard.png").stat().st_size > 10_000
    assert README_SHOT.exists() and "docs/dashboard.png" in (REPO / "README.md").read_text()
