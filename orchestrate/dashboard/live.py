"""``LiveState``: what the dashboard knows of one cluster, as the one document the page reads.

It is fed observations (``observe``: the backend's inventory and the master's ``status``, as
``Backend.inventory`` and ``Backend.control(["status"])`` return them), the checks of a job
(``set_checks``) and marks (``mark``); ``snapshot()`` is the JSON the page renders, whole, on
every update. No web and no threads here: the poller calls it, the unit tests drive it.

The snapshot's keys (the page reads these, nothing else):

- ``cluster``: name, backend, file; ``health``: ``state`` (one of ``HEALTH``) and ``detail``;
- ``machines``: the nodes the backend reports (``multi`` when there are several: the page
  then shows a machine column and boxes in the topology);
- ``topology``: Cytoscape.js elements (``orchestrate.graph.elements``, the drawing of
  ``orchestrate graph``) with each container's addresses and state, and a ``key`` that
  changes only when the drawing does;
- ``workers``: one row per worker (``WORKER_STATES``, tasks in the current job, rate,
  leases held, the Python it reported, its machine and addresses);
- ``job``: the current job's progress, counts and spec; ``series``: throughput over time
  (``t`` in epoch seconds, ``rate`` in tasks/s) for that job;
- ``events``: marks on the throughput chart, ``{"t", "kind", "label"}``. **The hook for
  chaos scenarios**: whatever disturbs the cluster calls ``mark(kind, label)`` (through
  ``Poller.mark``) and the page draws a vertical line at ``t`` on the chart and lists it.
  The dashboard itself marks jobs starting and ending and workers going and coming back;
- ``checks``: the e2e checks of the last job (or of the last ``check``), with evidence;
- ``action``: what the page's last action is doing or said; ``form``: the job form's fields.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distproc.text import plural

from .. import graph
from ..backends.base import ContainerInfo, Inventory
from ..model import Cluster

HEALTH = ("unknown", "up", "partly up", "down", "engine unreachable")
#: connecting: its container runs, the master does not count it connected (yet, or any
#: more); idle / working: connected, holding no lease / some; gone: no running container
#: (killed, exited, removed) or it left the master on purpose.
WORKER_STATES = ("connecting", "idle", "working", "gone")
RATE_WINDOW = 5.0  # seconds a worker's rate is averaged over
SERIES_POINTS = 900  # throughput samples kept: 15 minutes at one a second
EVENTS_KEPT = 200


@dataclass
class Mark:
    """A mark on the throughput chart."""

    t: float
    kind: str  # "job", "worker", "chaos", "test", ...
    label: str

    def as_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "kind": self.kind, "label": self.label}


def _by_name(status: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The master's worker records by the name each reported; a worker that reconnected has
    several records: the connected one wins, else the last."""
    out: dict[str, dict[str, Any]] = {}
    for rec in (status or {}).get("workers", []):
        name = rec.get("identity", {}).get("name") or rec.get("id", "")
        if name not in out or rec.get("connected") or not out[name].get("connected"):
            out[name] = rec
    return out


class LiveState:
    """The dashboard's view of one cluster (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        worker_names: list[str],
        source: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.expected = worker_names  # the names the workers report (Backend.worker_names)
        self.source = source
        self.clock = clock
        self.version = 0
        self.updated = 0.0
        self.health = {"state": "unknown", "detail": "not observed yet"}
        self.inventory: Inventory | None = None
        self.status: dict[str, Any] | None = None
        self.rows: list[dict[str, Any]] = []
        self.job: dict[str, Any] | None = None
        self.series: deque[tuple[float, float]] = deque(maxlen=SERIES_POINTS)
        self._last_sample: tuple[float, int] | None = None
        self._series_job = ""
        self._seen_running = False
        self._finished_seen = ""
        self._tasks: dict[str, deque[tuple[float, int]]] = {}
        self.events: deque[Mark] = deque(maxlen=EVENTS_KEPT)
        self.checks: dict[str, Any] = {"job": "", "source": "", "items": []}
        self.action: dict[str, Any] = {"name": "", "running": False, "message": "", "error": ""}
        self._states: dict[str, str] = {}

    # -- inputs ------------------------------------------------------------------------------
    def mark(self, kind: str, label: str, t: float | None = None) -> Mark:
        """Add a mark on the throughput chart (the hook for chaos scenarios)."""
        m = Mark(self.clock() if t is None else t, kind, label)
        self.events.append(m)
        self.version += 1
        return m

    def set_checks(self, items: list[dict[str, Any]], job: str, source: str) -> None:
        """The checks of job ``job`` (as ``orchestrate.checks`` makes them)."""
        self.checks = {"job": job, "source": source, "items": items}
        self.version += 1

    def set_action(self, **fields: Any) -> None:
        self.action = {**self.action, **fields}
        self.version += 1

    def observe(
        self,
        inv: Inventory | None,
        status: dict[str, Any] | None,
        engine_error: str = "",
        master_error: str = "",
    ) -> None:
        """One poll: the inventory (None when the engine failed: ``engine_error`` says why)
        and the master's status (None when it was not asked or did not answer:
        ``master_error`` says why)."""
        now = self.clock()
        self.version += 1
        self.updated = now
        if inv is None:
            self.health = {"state": "engine unreachable", "detail": engine_error}
            return
        self.inventory, self.status = inv, status
        self.rows = self._rows(inv, status)
        self._mark_transitions()
        self.health = self._health(inv, status, master_error)
        self._observe_job(now, (status or {}).get("job"))
        self._observe_rates(now)

    # -- derived -----------------------------------------------------------------------------
    def _container_of(self, inv: Inventory, name: str) -> ContainerInfo | None:
        for c in inv.workers:
            if name in (c.identity, c.name):
                return c
        return None

    def _rows(self, inv: Inventory, status: dict[str, Any] | None) -> list[dict[str, Any]]:
        records = _by_name(status)
        rows = [
            self._row(name, self._container_of(inv, name), records.pop(name, None))
            for name in self.expected
        ]
        for name, rec in records.items():  # joined by hand, or a tutorial worker (classic@IP)
            rows.append(self._row(name, None, rec, managed=False))
        return rows

    def _row(
        self, name: str, c: ContainerInfo | None, rec: dict[str, Any] | None, managed: bool = True
    ) -> dict[str, Any]:
        running = c is not None and c.state == "running" if managed else True
        connected = bool(rec and rec.get("connected"))
        leased = int(rec.get("leased", 0)) if rec else 0
        if not running or (rec is not None and rec.get("left") and not connected):
            state = "gone"
        elif not connected:
            state = "connecting"
        else:
            state = "working" if leased else "idle"
        identity = rec.get("identity", {}) if rec else {}
        return {
            "name": name,
            "container": c.name if c else "",
            "group": (c.group if c else "") or identity.get("group", ""),
            "machine": c.node if c else "",
            "addresses": dict(c.addresses) if c else {},
            "peers": rec.get("peers", []) if rec else [],
            "container_state": c.state if c else ("" if not managed else "missing"),
            "state": state,
            "python": identity.get("python", ""),
            "tasks": int(rec.get("tasks", 0)) if rec else 0,
            "leased": leased,
            "rate": 0.0,
            "managed": managed,
        }

    def _mark_transitions(self) -> None:
        """A worker that goes, or comes back, is a mark on the chart (not on the first poll)."""
        first = not self._states
        for row in self.rows:
            before = self._states.get(row["name"])
            self._states[row["name"]] = row["state"]
            if first or before is None or before == row["state"]:
                continue
            if row["state"] == "gone":
                why = row["container_state"] or "left"
                self.events.append(Mark(self.clock(), "worker", f"{row['name']} gone ({why})"))
            elif before in ("gone", "connecting") and row["state"] in ("idle", "working"):
                self.events.append(Mark(self.clock(), "worker", f"{row['name']} connected"))

    def _health(self, inv: Inventory, status: dict[str, Any] | None, why: str) -> dict[str, str]:
        name = self.cluster.name
        if inv.empty:
            return {"state": "down", "detail": f"cluster {name!r} is not running"}
        running = sum(1 for r in self.rows if r["managed"] and r["container_state"] == "running")
        connected = sum(1 for r in self.rows if r["managed"] and r["state"] in ("idle", "working"))
        n = len(self.expected)
        workers = f"{running}/{plural(n, 'worker')} running, {connected} connected"
        if inv.master is None or inv.master.state != "running":
            master = "missing" if inv.master is None else inv.master.state
            return {"state": "partly up", "detail": f"the master is {master}; {workers}"}
        if status is None:
            detail = f"the master does not answer ({why}); {workers}"
            return {"state": "partly up", "detail": detail}
        gone = [
            r["name"] for r in self.rows if r["managed"] and r["state"] not in ("idle", "working")
        ]
        if gone:
            return {"state": "partly up", "detail": f"{workers}; not connected: {', '.join(gone)}"}
        return {"state": "up", "detail": workers}

    def _observe_job(self, now: float, job: dict[str, Any] | None) -> None:
        """The current job's progress, and one throughput sample per poll until it ends
        (a finished job's chart stays as it ended). A job seen running is marked when it
        starts and when it ends; one already over when first seen (the page opened after
        it) is not."""
        self.job = dict(job) if job else None
        if not job:
            return
        job_id, done = job.get("job", ""), int(job.get("done", 0))
        if job_id != self._series_job:
            self._series_job, self._seen_running = job_id, not job.get("finished")
            self.series.clear()
            self._last_sample = None
            if self._seen_running:
                spec = job.get("spec") or {}
                what = f"{plural(int(job.get('total', 0)), spec.get('kind', '') + ' task')}"
                self.mark("job", f"job {job_id} started: {what} ({spec.get('protocol', '?')})")
        if self._finished_seen == job_id:
            return
        if self._last_sample is not None and now > self._last_sample[0]:
            t0, d0 = self._last_sample
            self.series.append((now, (done - d0) / (now - t0)))
        self._last_sample = (now, done)
        if job.get("finished"):
            self._finished_seen = job_id
            if self._seen_running:
                self.mark("job", f"job {job_id} ended: {job.get('ok', 0)}/{job.get('total')} ok")

    def _observe_rates(self, now: float) -> None:
        job_id = (self.job or {}).get("job", "")
        for row in self.rows:
            samples = self._tasks.setdefault(f"{job_id}/{row['name']}", deque())
            samples.append((now, row["tasks"]))
            while len(samples) > 1 and now - samples[0][0] > RATE_WINDOW:
                samples.popleft()
            t0, n0 = samples[0]
            row["rate"] = round((row["tasks"] - n0) / (now - t0), 1) if now > t0 else 0.0
        live = {f"{job_id}/{r['name']}" for r in self.rows}
        for key in [k for k in self._tasks if k not in live]:
            del self._tasks[key]

    def topology(self) -> dict[str, Any]:
        """``graph.elements`` with what the engine says: each container's addresses and
        state, and, when the backend runs on several machines, the machine it is on."""
        inv = self.inventory
        where = None
        machines = None
        if inv is not None and len(inv.nodes) > 1:
            machines = {n.name: f"{n.name}\n{n.address} ({n.role})" for n in inv.nodes}
            where = {
                c.name: [c.node]
                for c in [*([inv.master] if inv.master else []), *inv.workers]
                if c.node
            }
        els = graph.elements(self.cluster, where, machines)
        rows = {r["container"] or r["name"]: r for r in self.rows}
        master = inv.master if inv is not None else None
        for el in els:
            data = el["data"]
            if data.get("kind") == "master":
                addrs = master.addresses if master else {}
                state = "up" if master and master.state == "running" else "gone"
                if master and state == "up" and self.status is None:
                    state = "connecting"
                data["label"] += "".join(f"\n{ip} ({net})" for net, ip in addrs.items())
                el["classes"] = state
            elif data.get("kind") == "worker":
                row = rows.get(data["id"])
                addrs = row["addresses"] if row else {}
                data["label"] += "".join(f"\n{ip} ({net})" for net, ip in addrs.items())
                el["classes"] = row["state"] if row else "gone"
        key = hashlib.sha256(json.dumps(els, sort_keys=True).encode()).hexdigest()[:16]
        return {"key": key, "elements": els}

    def snapshot(self) -> dict[str, Any]:
        """The document the page renders (see the module docstring)."""
        inv = self.inventory
        job = self.job
        running = job is not None and not job.get("finished")
        return {
            "version": self.version,
            "updated": round(self.updated, 3),
            "cluster": {
                "name": self.cluster.name,
                "backend": inv.backend if inv is not None else self.cluster.backend,
                "file": self.source,
                "run": inv.run if inv is not None else "",
            },
            "health": self.health,
            "machines": {
                "nodes": [n.as_json() for n in inv.nodes] if inv is not None else [],
                "multi": inv is not None and len(inv.nodes) > 1,
            },
            "topology": self.topology(),
            "workers": self.rows,
            "job": job,
            "series": {
                "t": [round(t, 3) for t, _ in self.series],
                "rate": [round(r, 1) for _, r in self.series],
            },
            "events": [m.as_json() for m in self.events],
            "checks": {**self.checks, "stale": running and self.checks["job"] != job.get("job")},
            "action": self.action,
            "form": self.form(),
        }

    def form(self) -> dict[str, Any]:
        """What the page's job form offers: the file's job as defaults, the choices of each
        field that has some (from ``distproc.spec``, where the fields are defined)."""
        from distproc.kinds import BUILTIN
        from distproc.spec import job_fields

        choices = {f.name: list(f.choices) for f in job_fields() if f.choices}
        return {"defaults": self.cluster.job.spec(), "choices": {"kind": list(BUILTIN), **choices}}
