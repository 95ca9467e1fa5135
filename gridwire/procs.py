"""Child server processes (mosquitto, influxd) for the one-box demo and the tests: free ports, readiness, stop and kill."""

from __future__ import annotations

import os
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


class ManagedProcess:
    """A child process with a log file, that can be stopped gracefully, killed, and started again."""

    def __init__(self, *, argv: Sequence[str], log: Path, port: int | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self.port = port
        self.env = env
        self.cwd = cwd
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
                                     start_new_session=True)
        out.close()
        if self.port is not None:
            wait_for_port(self.port, proc=self.proc, log=self.log, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
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
