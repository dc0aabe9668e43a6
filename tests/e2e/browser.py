"""Headless Chromium for the dashboard's browser tests: Debian's ``chromium`` and
``chromium-driver`` through Selenium (``.ci/run`` installs them), and the dashboard served by
the real CLI in a process of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from e2e_harness import ARTIFACTS, REPO

SHOTS = ARTIFACTS / "dashboard"
#: What works on this machine's closed network (the flags the machine's notes give): without
#: the background-networking ones Chromium keeps trying Google's hosts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
T = TypeVar("T")


#: Debian's Chromium first (what .ci/run installs); Chrome where a CI image has it instead.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    return next((path for exe in BROWSERS if (path := shutil.which(exe))), None)


def _driver() -> str | None:
    """Debian's chromedriver, or the one a CI image names in $CHROMEWEBDRIVER."""
    where = os.environ.get("CHROMEWEBDRIVER")
    return shutil.which("chromedriver") or (
        str(Path(where) / "chromedriver") if where and (Path(where) / "chromedriver").exists()
        else None
    )  # fmt: skip


def chromium_problem() -> str | None:
    """Why no browser test can run here, or None."""
    missing = [what for what, path in (("chromium", _browser()), ("chromedriver", _driver()))
               if path is None]  # fmt: skip
    if missing:
        return f"no {' and no '.join(missing)} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (the [test] extra)"
    return None


def start_chromium() -> Any:
    """A fresh headless Chromium (its own empty profile), driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _browser() or "chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='distproc-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_driver()))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def save_failure(driver: Any, name: str) -> list[Path]:
    """A screenshot, the page's HTML and the browser's console, for the CI artifacts."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    driver.save_screenshot(str(shot))
    html = SHOTS / f"{name}.html"
    html.write_text(driver.page_source)
    console = SHOTS / f"{name}.console.txt"
    try:
        console.write_text("\n".join(str(e) for e in driver.get_log("browser")))
    except Exception as exc:  # a driver that cannot say: say that
        console.write_text(f"no console log: {exc}")
    return [shot, html, console]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dashboard:
    """``orchestrate dashboard`` running in a process of its own."""

    proc: subprocess.Popen
    port: int
    token: str
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, token: str | None = None) -> str:
        return f"{self.origin}/#token={self.token if token is None else token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_dashboard(file: Path, state: Path, work: Path, *args: str) -> Dashboard:
    """Serve ``file``'s dashboard on a free port with a token from a file; returns once it
    answers (at most 30 s)."""
    token = "e2e-" + os.urandom(12).hex()
    token_file = work / "dashboard-token"
    token_file.write_text(token + "\n")
    port = free_port()
    log = work / f"dashboard-{port}.log"
    env = dict(os.environ, DISTPROC_STATE_DIR=str(state))
    cmd = [sys.executable, "-m", "orchestrate", "dashboard", "-f", str(file), "--port", str(port)]
    cmd += ["--token-file", str(token_file), *args]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    dash = Dashboard(proc, port, token, log)
    deadline = time.monotonic() + 30
    while "dashboard of" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            dash.stop()
            raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return dash


def wait_for(what: str, probe: Callable[[], T], timeout: float, every: float = 0.25) -> T:
    """``probe()`` until it returns something true (bounded); else an AssertionError that
    says what was awaited and what was last seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # a page between two renders: try again
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"waited {timeout:.0f}s for {what}; last seen: {last!r}")
