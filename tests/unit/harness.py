"""Real masters and workers as processes on 127.0.0.1, on free ports (see conftest.py)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Procs:
    """Processes of one test: started with the key file, stopped (by handle) at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = secrets.token_hex(16)
        self.keyfile = tmp / "authkey"
        self.keyfile.write_text(self.key)
        self.keyfile.chmod(0o600)
        self.port = free_port()
        self.master_addr = f"127.0.0.1:{self.port}"
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ, DISTPROC_AUTHKEY_FILE=str(self.keyfile), PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        return env

    def start(self, *args: str, name: str = "proc") -> subprocess.Popen:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        out = open(log, "wb")  # noqa: SIM115 (closed with the process at teardown)
        p = subprocess.Popen(
            [sys.executable, "-m", "distproc", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env(),
            cwd=REPO,
        )
        self.procs.append((p, log))
        return p

    def master(self, *args: str, wait: bool = True) -> subprocess.Popen:
        p = self.start(
            "master", "--host", "127.0.0.1", "--port", str(self.port), *args, name="master"
        )
        if wait:
            wait_listening(self.port)
        return p

    def worker(self, *args: str) -> subprocess.Popen:
        return self.start(
            "worker",
            "--master",
            self.master_addr,
            "--connect-timeout",
            "20",
            "--heartbeat",
            "0.2",
            *args,
            name="worker",
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "distproc", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=REPO,
            timeout=timeout,
        )

    def submit(self, *args: str, timeout: float = 90) -> tuple[int, dict[str, Any]]:
        r = self.cli(
            "submit", "--master", self.master_addr, "--progress", "none", *args, timeout=timeout
        )
        assert r.stdout.strip(), f"no report; stderr:\n{r.stderr}"
        return r.returncode, json.loads(r.stdout)

    def submit_bg(self, *args: str) -> subprocess.Popen:
        """A submit running in the background; its report comes on its stdout."""
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distproc",
                "submit",
                "--master",
                self.master_addr,
                "--progress",
                "none",
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=REPO,
        )

    def wait_done(self, at_least: int, timeout: float = 30.0) -> None:
        """Until the current job has at least ``at_least`` tasks done (workers hold leases)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status()["job"]
            if job is not None and job["done"] >= at_least:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the job did not reach {at_least} tasks done: {job}")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        r = self.cli("status", "--master", self.master_addr)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_workers(self, n: int, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if sum(w["connected"] for w in st["workers"]) >= n:
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} workers not connected: {st['workers']}")
            time.sleep(0.1)

    def log_of(self, p: subprocess.Popen) -> str:
        for q, log in self.procs:
            if q is p:
                return log.read_text(errors="replace")
        raise KeyError(p)

    def stop_all(self) -> None:
        for p, _ in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
