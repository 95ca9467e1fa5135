"""The concentrator's supervisor (``gridwire concentrator supervise``): starts the current
version's ``gridwire concentrator run``, restarts it on the version it switched to, and rolls an
update back when the new version does not prove healthy.

It is what systemd runs (the unit's ExecStart), from the package's factory tree, which no update
replaces. The concentrator it starts learns its version and the software directory from
``GRIDWIRE_SOFTWARE_VERSION`` and ``GRIDWIRE_SOFTWARE_DIR``; an update it installs ends it with
:data:`RESTART`. A version on trial (``update.json`` in phase ``trial``) that ends any other way,
that reports :data:`ROLLBACK` (its own health check failed), or that is still unproven past its
health deadline (plus a grace) is stopped and rolled back: ``previous`` becomes ``current``
again, the state says ``rolled_back`` and why, and the previous version, started again, answers
the update command with ROLLED_BACK. Without systemd the supervisor is just as usable (the tests
run it as a plain process).

On a rollback it first gets the outbox back to a schema the previous version reads
(:func:`edge.outbox_schema.downgrade`, from what ``update.json`` recorded).

Standard library only, like ``releases.py`` and ``edge/outbox_schema.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from edge.selfupdate.releases import ENTRY_POINT, InstallError, Releases

log = logging.getLogger(__name__)

VERSION_ENV = "GRIDWIRE_SOFTWARE_VERSION"
DIR_ENV = "GRIDWIRE_SOFTWARE_DIR"
# Exit codes between the concentrator and its supervisor (sysexits' EX_TEMPFAIL and the next).
RESTART = 75
ROLLBACK = 76
# Beyond the version's own health deadline: how long the supervisor waits before it decides.
GRACE_S = 10.0
STOP_TIMEOUT_S = 30.0


class Supervisor:
    """Runs ``<tree>/bin/gridwire <args>`` for the current version until told to stop."""

    def __init__(self, *, releases: Releases, args: Sequence[str], poll: float = 0.2) -> None:
        self.releases = releases
        self.args = list(args)
        self.poll = poll
        self._stopping = False
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, *_: object) -> None:
        """Stop the concentrator (SIGTERM) and then the supervisor."""
        self._stopping = True
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Until stopped, or until a version not on trial ends (its exit code: systemd restarts)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while True:
            version, tree = self.releases.current()
            state = self.releases.state()
            trial = state is not None and state.phase == "trial" and state.target == version
            log.info("starting version %s (%s)%s", version, tree, " on trial" if trial else "")
            env = {**os.environ, VERSION_ENV: version, DIR_ENV: str(self.releases.root)}
            self._child = subprocess.Popen([str(tree / ENTRY_POINT), *self.args], env=env)
            deadline = time.monotonic() + state.health_deadline + GRACE_S if trial and state else None
            code = self._wait(deadline)
            if self._stopping:
                return code
            if code == RESTART:
                continue
            state = self.releases.state()
            if state is not None and state.target == version and state.phase in ("trial", "failed"):
                self._roll_back(version, code, state.reason if state.phase == "failed" else None)
                continue
            log.warning("version %s ended with code %d", version, code)
            return code

    def _wait(self, deadline: float | None) -> int:
        child = self._child
        assert child is not None
        while True:
            code = child.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() > deadline and not self._stopping:
                state = self.releases.state()
                if state is not None and state.phase in ("trial", "failed"):
                    log.warning("the version on trial is unproven past its health deadline: stopping it")
                    if state.phase == "trial":
                        self.releases.save(state.but(phase="failed", reason=(
                            f"version {state.target} did not pass its health check within "
                            f"{state.health_deadline:g} s")))
                    return _terminate(child)
                deadline = None
            time.sleep(self.poll)

    def _roll_back(self, version: str, code: int, reason: str | None) -> None:
        state = self.releases.state()
        assert state is not None
        if reason is None:
            reason = f"version {version} exited with code {code} before its health check passed"
        back = self.releases.roll_back()
        if state.outbox and state.outbox_schema is not None:
            # Imported here, not at the top: the supervisor stays resident and sqlite3 is only for
            # this (issue 15: RSS); it runs from the factory tree, which no update replaces.
            from edge import outbox_schema

            try:  # before the previous version starts: it must be able to read the outbox
                outbox_schema.downgrade(Path(state.outbox), state.outbox_schema)
            except Exception as exc:  # logged; the previous version then refuses the outbox and says so
                log.error("the outbox could not be downgraded for %s: %s", back, exc)
        self.releases.save(state.but(phase="rolled_back", reason=reason))
        log.error("rolled back from %s to %s: %s", version, back, reason)


def _terminate(child: subprocess.Popen[bytes]) -> int:
    child.send_signal(signal.SIGTERM)
    try:
        return child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def supervise(*, software_dir: Path, factory: Path | None, args: Sequence[str]) -> int:
    """The command's body: the exit code to end with."""
    try:
        return Supervisor(releases=Releases(software_dir, factory=factory), args=args).run()
    except InstallError as exc:
        log.error("%s", exc)
        return 2
