"""Following a job to its report, through restarts of the master.

``submit --progress json`` names its job first (``{"job": {"id", "total"}}``). When the
command ends without a report (the master died, and the exec with it), the job is not over:
a master with a journal replays it when it starts again. So ``JobFollower`` waits for the
master to answer again (bounded by ``MASTER_BACK_WAIT``: the engine's restart policy brings
back a master that died on its own, Swarm reschedules its task, a user may start it), then
follows the same job with ``attach --job ID``, and says what happened. A job the restarted
master does not know (no journal, or the journal's volume gone) is a ``JobFailed`` that says
so, never "the job did not run". At most ``MAX_ATTACHES`` restarts are followed per job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distproc.cli import EXIT_CHECK, EXIT_OK, EXIT_UNKNOWN_JOB, EXIT_USAGE

from .backends.base import Backend, EngineError, ExecResult
from .events import Events
from .model import Cluster, OrchestrateError

#: seconds to wait for a master that went away mid-job to answer again
MASTER_BACK_WAIT = 180.0
#: restarts followed per job, at most (each is bounded by MASTER_BACK_WAIT)
MAX_ATTACHES = 20
POLL = 0.5


class JobLost(OrchestrateError):
    """The job cannot be followed to a report (its master is gone, or forgot it)."""


@dataclass
class Followed:
    """How a job was followed: the command that gave its report, and each restart said."""

    result: ExecResult
    job_id: str | None = None
    total: int = 0
    restarts: list[str] = field(default_factory=list)


def has_report(res: ExecResult) -> bool:
    """``submit`` and ``attach`` print a report and exit 0 (all checks pass) or 3."""
    return res.exit_code in (EXIT_OK, EXIT_CHECK) and bool(res.stdout.strip())


class JobFollower:
    """One job of ``cluster`` on ``backend``: submitted, then attached to after restarts.
    Progress lines go to ``on_line`` as they come, from every command alike."""

    def __init__(
        self,
        cluster: Cluster,
        backend: Backend,
        events: Events,
        on_line: Callable[[str], None],
        back_wait: float = MASTER_BACK_WAIT,
    ) -> None:
        self.cluster = cluster
        self.backend = backend
        self.events = events
        self.on_line = on_line
        self.back_wait = back_wait
        self.job_id: str | None = None
        self.total = 0

    def _line(self, line: str) -> None:
        if line.startswith('{"job"'):
            job = json.loads(line)["job"]
            self.job_id, self.total = str(job["id"]), int(job["total"])
        else:
            self.on_line(line)

    def _command(self, argv: list[str]) -> ExecResult:
        """``argv`` on the master; once the job is known, an engine error (the exec lost
        with its container) is one more way of losing the master, followed like the rest."""
        try:
            return self.backend.control(self.cluster.name, argv, self._line)
        except EngineError as exc:
            if self.job_id is None:
                raise
            return ExecResult(-1, "", str(exc))

    def attach(self, job_id: str, timeout: float) -> Followed:
        """Follow job ``job_id`` (submitted earlier) as ``run`` follows its own."""
        self.job_id = job_id
        argv = ["attach", "--job", job_id, "--progress", "json", "--timeout", f"{timeout:.0f}"]
        return self.run(argv, timeout)

    def run(self, argv: list[str], timeout: float) -> Followed:
        """Run ``argv`` (a ``submit``, or an ``attach``), and follow the job until a report,
        ``timeout`` seconds at most in all (passed on to each ``attach`` as what is left)."""
        t0 = time.monotonic()
        res = self._command(argv)
        if res.exit_code == EXIT_UNKNOWN_JOB and argv[0] == "attach":
            raise JobLost(f"the master does not know job {_short(self.job_id)}: {_said(res)}")
        out = Followed(res)
        seen = None  # the master's instance after the last command that ended without a report
        for _ in range(MAX_ATTACHES):
            out.job_id, out.total = self.job_id, self.total
            if has_report(res) or self.job_id is None:
                return out  # a report, or a submit refused before any job existed
            if res.exit_code == EXIT_USAGE:  # never a lost master: the command did not run
                raise JobLost(f"`{argv[0]}` was refused: {_said(res)}")
            gone = time.monotonic() - t0
            self.events.warn(
                f"lost the master {gone:.1f}s into job {_short(self.job_id)} "
                f"(exit {res.exit_code}): "
                f"waiting for it to answer again (at most {self.back_wait:.0f}s: the engine "
                "restarts a master that died on its own; one stopped by hand waits for a start)"
            )
            status = self._master_back()
            instance = (status.get("master") or {}).get("instance")
            if instance is not None and instance == seen:  # the same master, twice: the
                raise JobLost(  # command fails on its own, and would fail every time
                    f"`attach` failed while the master kept running (exit {res.exit_code}): "
                    f"{_said(res)}"
                )
            seen = instance
            said = self._restarted(status, time.monotonic() - t0)
            out.restarts.append(said)
            self.events.info(said)
            left = max(1.0, timeout - (time.monotonic() - t0))
            argv = ["attach", "--job", self.job_id, "--progress", "json", "--timeout",
                    f"{left:.0f}"]  # fmt: skip
            res = out.result = self._command(argv)
            if res.exit_code == EXIT_UNKNOWN_JOB:
                raise JobLost(self._forgotten(status))
        raise JobLost(f"the master restarted {MAX_ATTACHES} times during job {_short(self.job_id)}")

    def _master_back(self) -> dict[str, Any]:
        """The status of the master once it answers again; ``JobLost`` past the wait."""
        deadline = time.monotonic() + self.back_wait
        why = "it did not answer"
        while time.monotonic() < deadline:
            try:
                res = self.backend.control(self.cluster.name, ["status", "--connect-timeout", "2"])
            except EngineError as exc:  # no master container running (yet)
                why = str(exc)
            else:
                if res.exit_code == 0:
                    return json.loads(res.stdout)
                why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else why
            time.sleep(POLL)
        raise JobLost(
            f"the master did not come back within {self.back_wait:.0f}s ({why}): job "
            f"{self.job_id} waits in its journal; start the master again, then "
            f"`orchestrate job --attach {self.job_id}`"
        )

    def _restarted(self, status: dict[str, Any], at: float) -> str:
        """What the master that answers again says it did with our job."""
        journal = status.get("journal") or {}
        resumed = journal.get("resumed") or {}
        if journal.get("path") is None:
            return f"the master answers again at {at:.1f}s, without a journal"
        if resumed.get("job") == self.job_id:
            done, total = int(resumed["done"]), int(resumed["total"])
            return (
                f"master restarted at {at:.1f}s; resumed job {self.job_id} from the journal: "
                f"{done:,} done, {total - done:,} to go"
            )
        if journal.get("replayed_at") is None:
            return f"the master answers again at {at:.1f}s (it had not restarted)"
        return f"master restarted at {at:.1f}s; job {self.job_id} was not running in its journal"

    def _forgotten(self, status: dict[str, Any]) -> str:
        journal = status.get("journal") or {}
        if journal.get("path") is None:
            why = "it keeps no journal (master.journal: false), so the job died with it"
        else:
            why = "its journal does not have it (the volume was new: removed, or elsewhere)"
        return f"the restarted master does not know job {_short(self.job_id)}: {why}"


def _short(text: str | None, limit: int = 80) -> str:
    """An id or a message as given by a user or a command, cut to a line's length."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _said(res: ExecResult) -> str:
    """The last line a command wrote on stderr (its error), cut short."""
    lines = [x for x in res.stderr.strip().splitlines() if not x.startswith("{")]
    return _short(lines[-1] if lines else "no output", 300)
