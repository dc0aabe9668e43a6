"""How much the dashboard asks of the master, by the number of pages open.

``python -m bench.dashboard_polling -f FILE [--seconds 15] [--pages 1 10 50]`` serves the
dashboard of a running cluster in this process, opens N pages' worth of event streams (HTTP
clients reading ``/api/events``, as ``EventSource`` does), and counts, over the same time for
each N: the requests that reached the master (``status``, ``report``: each one is a
``docker exec`` on the local backend), the polls, the updates each page received, and how
long a poll took. The claim it measures: the requests to the master do not grow with N.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from typing import Any

import httpx

from orchestrate.backends import make_backend
from orchestrate.dashboard import server
from orchestrate.dashboard.poller import Poller
from orchestrate.model import load_cluster


def _page(origin: str, token: str, stop: threading.Event, got: list[int]) -> None:
    with httpx.Client(base_url=origin, timeout=30) as client:
        client.post("/api/session", headers={server.TOKEN_HEADER: token})
        with client.stream("GET", "/api/events") as res:
            for line in res.iter_lines():
                if line.startswith("data: "):
                    got[0] += 1
                if stop.is_set():
                    return


def measure(file: str, pages: int, seconds: float, port: int) -> dict[str, Any]:
    cluster = load_cluster(file)
    poller = Poller(cluster, lambda: make_backend(cluster.backend, cluster), file)
    token = secrets.token_urlsafe(24)
    uv = server.serve(poller, "127.0.0.1", port, token, in_thread=True)
    while not uv.started:
        time.sleep(0.05)
    stop = threading.Event()
    counts = [[0] for _ in range(pages)]
    threads = [
        threading.Thread(target=_page, args=(f"http://127.0.0.1:{port}", token, stop, c))
        for c in counts
    ]
    for t in threads:
        t.start()
    time.sleep(2)  # every page connected, the first polls done
    before, polls0 = dict(poller.requests), poller.polls
    updates0 = [c[0] for c in counts]
    durations = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        durations.append(poller.duration)
        time.sleep(1)
    elapsed = time.monotonic() - t0
    after = dict(poller.requests)
    master = sum(after.get(k, 0) - before.get(k, 0) for k in ("status", "report"))
    updates = [c[0] - u for c, u in zip(counts, updates0, strict=True)]
    stop.set()
    uv.should_exit = True
    poller.stop()
    return {
        "pages": pages,
        "seconds": round(elapsed, 1),
        "master_requests_per_s": round(master / elapsed, 2),
        "polls_per_s": round((poller.polls - polls0) / elapsed, 2),
        "updates_per_page_per_s": round(min(updates) / elapsed, 2),
        "poll_seconds_mean": round(sum(durations) / max(1, len(durations)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-f", "--file", default="cluster.yaml")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--port", type=int, default=8057)
    args = parser.parse_args()
    for i, n in enumerate(args.pages):
        print(json.dumps(measure(args.file, n, args.seconds, args.port + i)), flush=True)


if __name__ == "__main__":
    main()
