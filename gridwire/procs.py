"""Child server processes (mosquitto, influxd, PostgreSQL) for the one-box demo and the tests: free ports, readiness, stop and kill."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 20.0,
                  proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Return once something accepts connections on ``port``; fail loudly with the log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout}s:\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-4000:]


def as_user(user: str | None) -> dict:
    """``subprocess`` arguments that run a child as ``user``, with that account's groups (none
    for ``None``)."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": os.getgrouplist(user, account.pw_gid)}


class ManagedProcess:
    """A child process with a log file, that can be stopped gracefully, killed, and started again.

    ``user`` runs it as that account (its group and supplementary groups too; only root may), for
    servers that refuse to run as root. ``stop_signal`` is what :meth:`stop` sends first.
    """

    def __init__(self, *, argv: Sequence[str], log: Path, port: int | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None, user: str | None = None,
                 stop_signal: signal.Signals = signal.SIGTERM) -> None:
        self.argv = list(argv)
        self.log = log
        self.port = port
        self.env = env
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen | None = None

    def start(self, *, timeout: float = 20.0) -> None:
        if self.running:
            # A second start would lose track of the first process, which would keep its port.
            assert self.proc is not None
            raise RuntimeError(f"{self.argv[0]} is running already (pid {self.proc.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(self.env or {})}, cwd=self.cwd,
                                     start_new_session=True, **as_user(self.user))
        out.close()
        if self.port is not None:
            wait_for_port(self.port, proc=self.proc, log=self.log, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout: float = 15.0) -> None:
        """``stop_signal`` (SIGTERM unless set), then SIGKILL if it does not exit within ``timeout``."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()
