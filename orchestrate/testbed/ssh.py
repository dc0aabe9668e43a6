"""Reaching a test machine over ssh, with fabric, its host key checked (``RejectPolicy``).

Fabric's ``Connection`` trusts any host key by default (``AutoAddPolicy``, fabric#2071); here
the policy is ``RejectPolicy`` and the only known keys are the test bed's known_hosts, so a
machine whose key is not the one generated for it is refused, never learnt. The key, user
and timeouts come from the test bed's ssh config (fabric reads it instead of ~/.ssh/config
and /etc/ssh/ssh_config); ~/.ssh and the ssh agent are not used.
"""

from __future__ import annotations

import socket
import time

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from .files import BedFiles
from .plan import Machine, TestbedError

CONNECT_TIMEOUT = 5
#: The inner engine's version, asked over ssh: the same command as the exec probe.
VERSION_COMMAND = "docker version --format '{{.Server.Version}}'"


def connection(files: BedFiles, m: Machine) -> Connection:
    """A fabric connection to ``m`` (not opened yet) that rejects unknown host keys."""
    config = Config(runtime_ssh_path=str(files.ssh_config))
    conn = Connection(
        m.name,
        config=config,
        connect_timeout=CONNECT_TIMEOUT,
        connect_kwargs={
            "key_filename": [str(files.key)],
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(files.known_hosts))
    return conn


#: Errors that mean "sshd is not listening yet": worth another try until the deadline.
_NOT_YET = (paramiko.ssh_exception.NoValidConnectionsError, socket.timeout, ConnectionError)


def ssh_version(files: BedFiles, m: Machine, deadline: float, every: float = 0.25) -> str:
    """The inner engine's version, read over ssh: proves the key, known_hosts, sshd and
    dockerd together. Retries while sshd is not listening, until ``deadline``; a host key
    that does not match (``BadHostKeyException``, or none known) fails at once."""
    while True:
        try:
            with connection(files, m) as conn:
                res = conn.run(VERSION_COMMAND, hide=True, warn=True, timeout=30)
            if res.ok and res.stdout.strip():
                return res.stdout.strip()
            raise TestbedError(
                f"{m.name}: `docker version` over ssh failed (exit {res.exited}): "
                f"{res.stderr.strip() or res.stdout.strip()}"
            )
        except paramiko.BadHostKeyException as exc:
            raise TestbedError(
                f"{m.name} ({m.address}): its host key is not the one in {files.known_hosts}: "
                f"refused ({exc})"
            ) from None
        except paramiko.AuthenticationException as exc:
            raise TestbedError(f"{m.name}: the test bed's key was refused ({exc})") from None
        except _NOT_YET as exc:
            if time.monotonic() >= deadline:
                raise TestbedError(f"{m.name}: no ssh at {m.address} in time ({exc})") from None
        except paramiko.SSHException as exc:
            # sshd accepted but had not spoken yet: try again; anything else (RejectPolicy:
            # no known key for the address) fails
            if "banner" not in str(exc) or time.monotonic() >= deadline:
                raise TestbedError(f"{m.name} ({m.address}): {exc}") from None
        except CommandTimedOut:
            raise TestbedError(f"{m.name}: `docker version` over ssh timed out") from None
        time.sleep(every)
