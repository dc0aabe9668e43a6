"""The dashboard's server and its security model, in-process (Starlette's TestClient) on the
``FakeBackend``: reading needs the session the token buys, changing anything needs the token
in a header from the dashboard's own origin, and a refused request changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_backend import FakeBackend
from starlette.testclient import TestClient

from orchestrate.cluster import ClusterRun
from orchestrate.dashboard import server
from orchestrate.dashboard.poller import Poller
from orchestrate.events import NullEvents
from orchestrate.model import OrchestrateError, load_cluster_text

REPO = Path(__file__).resolve().parents[2]
TOKEN = "a-test-token-of-enough-length"
ORIGIN = "http://127.0.0.1:8050"
ONE = """\
name: one
networks: [{name: a, subnet: 198.18.5.0/28}]
master: {networks: [a]}
workers: [{name: w, count: 2, networks: [a]}]
job: {kind: square, tasks: 20}
"""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def backend() -> FakeBackend:
    backend = FakeBackend()
    ClusterRun(load_cluster_text(ONE), backend, NullEvents()).up(run_job=False)
    return backend


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    poller = Poller(load_cluster_text(ONE), backend)
    poller.poll_once()
    app = server.create_app(poller, TOKEN, server.allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url=ORIGIN) as c:
        yield c


def _login(client: TestClient) -> None:
    res = client.post("/api/session", headers={server.TOKEN_HEADER: TOKEN, "Origin": ORIGIN})
    assert res.status_code == 200, res.text
    cookie = res.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def _submits(backend: FakeBackend) -> int:
    return sum(argv[0] == "submit" for argv in backend.controls)


def test_the_page_loads_without_a_token_and_says_nothing_of_the_cluster(client: TestClient) -> None:
    res = client.get("/")
    assert res.status_code == 200 and "distproc dashboard" in res.text
    assert "frame-ancestors 'none'" in res.headers["content-security-policy"]
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert "one-w-0" not in res.text
    for lib in ("cytoscape.min.js", "uPlot.iife.min.js"):  # served from here, never a CDN
        assert f'src="/static/vendor/{lib}"' in res.text
        assert client.get(f"/static/vendor/{lib}").status_code == 200
    assert "http" not in res.text.replace("http-equiv", "")


def test_reading_the_state_needs_the_session_the_token_buys(client: TestClient) -> None:
    assert client.get("/api/state").status_code == 403
    assert client.get("/api/events").status_code == 403
    wrong = client.post("/api/session", headers={server.TOKEN_HEADER: "not-" + TOKEN})
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    assert client.post("/api/session").status_code == 403  # no token at all
    _login(client)
    state = client.get("/api/state").json()
    assert state["cluster"]["name"] == "one"
    assert [w["name"] for w in state["workers"]] == ["one-w-0", "one-w-1"]


def test_a_job_needs_the_token_in_the_header_not_only_the_cookie(
    client: TestClient, backend: FakeBackend
) -> None:
    _login(client)
    body = {"kind": "square", "tasks": "8", "size": "", "protocol": "leased"}
    for headers in (
        {"Origin": ORIGIN},  # the cookie alone: what a cross-site form would send
        {"Origin": ORIGIN, server.TOKEN_HEADER: "wrong-token-of-some-length"},
    ):
        res = client.post("/api/job", json=body, headers=headers)
        assert res.status_code == 403, res.text
    assert _submits(backend) == 0
    res = client.post("/api/job", json=body, headers={server.TOKEN_HEADER: TOKEN, "Origin": ORIGIN})
    assert res.status_code == 200, res.text
    assert res.json()["overrides"] == {"kind": "square", "tasks": 8, "protocol": "leased"}


def test_another_origin_is_refused_even_with_the_token(
    client: TestClient, backend: FakeBackend
) -> None:
    _login(client)
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        res = client.post("/api/check", headers={server.TOKEN_HEADER: TOKEN, **headers})
        assert res.status_code == 403 and "cross-origin" in res.json()["error"]
    assert _submits(backend) == 0 and not any(a[0] == "report" for a in backend.controls)


def test_the_token_without_the_session_is_not_enough(client: TestClient) -> None:
    res = client.post("/api/cancel", headers={server.TOKEN_HEADER: TOKEN})
    assert res.status_code == 403


def test_no_get_changes_anything(client: TestClient, backend: FakeBackend) -> None:
    _login(client)
    for path in ("/api/job", "/api/cancel", "/api/check", "/api/session"):
        assert client.get(path, headers={server.TOKEN_HEADER: TOKEN}).status_code == 405
    assert _submits(backend) == 0


def test_a_foreign_host_name_is_refused_dns_rebinding(client: TestClient) -> None:
    res = client.get("/", headers={"Host": "attacker.example:8050"})
    assert res.status_code == 403 and "not allowed" in res.json()["error"]
    assert client.get("/", headers={"Host": "localhost:8050"}).status_code == 200


def test_bad_job_fields_are_refused_and_nothing_runs(
    client: TestClient, backend: FakeBackend
) -> None:
    _login(client)
    headers = {server.TOKEN_HEADER: TOKEN, "Origin": ORIGIN}
    for body, words in (
        ({"tasks": "-3"}, "tasks"),
        ({"kind": "rm -rf"}, "kind"),
        ({"colour": "red"}, "unknown job field 'colour'"),
    ):
        res = client.post("/api/job", json=body, headers=headers)
        assert res.status_code == 400 and words in res.json()["error"], res.text
    res = client.post("/api/job", content=b"[1, 2", headers=headers)
    assert res.status_code == 400
    assert _submits(backend) == 0


def test_cancel_with_no_job_running_says_so(client: TestClient) -> None:
    _login(client)
    res = client.post("/api/cancel", headers={server.TOKEN_HEADER: TOKEN, "Origin": ORIGIN})
    assert res.status_code == 400 and res.json()["error"] == "no job is running"


def test_the_stream_sends_the_snapshot(client: TestClient) -> None:
    _login(client)
    with client.stream("GET", "/api/events") as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        lines = res.iter_lines()
        assert next(lines).startswith("id: ")
        assert next(lines) == "event: state"
        data = next(lines)
    snap = json.loads(data.removeprefix("data: "))
    assert snap["health"]["state"] == "up" and snap["poll"]["clients"] >= 0


def test_tokens_and_hosts(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(OrchestrateError, match="16\\+ characters"):
        server.read_token(short)
    with pytest.raises(OrchestrateError, match="No such file"):
        server.read_token(tmp_path / "missing")
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert server.read_token(good) == TOKEN
    assert len(server.new_token()) >= 32
    assert "0.0.0.0" not in server.allowed_hosts("0.0.0.0")
    assert "198.18.9.1" in server.allowed_hosts("198.18.9.1", ["dash.lan"])
    assert "dash.lan" in server.allowed_hosts("127.0.0.1", ["dash.lan"])


def test_the_vendored_libraries_are_the_pinned_ones() -> None:
    """Every vendored file is the one of the pinned npm release (vendor.json), and has its
    license beside it; tools/vendor_js.py --check says the same from the command line."""
    lock = json.loads((server.STATIC / "vendor" / "vendor.json").read_text())
    names = {lib["name"] for lib in lock["libraries"]}
    assert names == {"cytoscape", "uplot"}
    for lib in lock["libraries"]:
        assert lib["integrity"].startswith("sha512-") and lib["version"].count(".") == 2
        assert any(f["from"] == "LICENSE" for f in lib["files"])
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "vendor_js.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_a_changed_vendored_file_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import vendor_js
    finally:
        sys.path.pop(0)
    copy = tmp_path / "vendor"
    copy.mkdir()
    for f in (server.STATIC / "vendor").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "uPlot.iife.min.js").write_bytes(b"alert('not uPlot')")
    monkeypatch.setattr(vendor_js, "VENDOR", copy)
    monkeypatch.setattr(vendor_js, "LOCK", copy / "vendor.json")
    assert vendor_js.check() == ["uPlot.iife.min.js: not the file of uplot@1.6.32"]
