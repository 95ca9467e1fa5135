"""The concentrator's self-update: ``update_firmware`` addressed to the concentrator itself, with
a signed manifest of kind ``concentrator-software``.

In the running version A, with params ``{"signedManifest": <SignedManifest JSON>}``:

1. the manifest's signature against the trusted keys (SIGNATURE_INVALID), its kind
   (KIND_MISMATCH) and the concentrator's model (MODEL_MISMATCH), all before any byte is fetched;
2. already running that version: success, nothing done;
3. the package by the chunk transfer, once (DOWNLOAD_FAILED; SIGNATURE_INVALID when its bytes
   are not the signed ones: nothing is unpacked then);
4. unpacked beside the running tree (INSTALL_FAILED), the update's state saved as ``trial``,
   ``current`` switched, and the process ends with RESTART. The command is not answered and so
   not acknowledged: the broker delivers it again to whichever version runs next.

In B, started by the supervisor: the health check runs at once: connected to the broker,
the outbox forwarding (empty, or the cloud confirmed something since the start), every
configured meter read since the start, all within the health deadline. Passed: the state
becomes ``committed`` and the redelivered command is answered with the new version. Failed:
the state becomes ``failed`` with the unmet conditions and the process ends with ROLLBACK; the
supervisor restores A, which answers the redelivered command ROLLED_BACK with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.lean.firmware import CONCENTRATOR_SOFTWARE, SignedManifest
from edge.commands.errors import CommandFailed
from edge.commands.executor import CommandHandler
from edge.ota.agent import signed_manifest
from edge import outbox_schema
from edge.selfupdate.releases import InstallError, Releases, UpdateState
from edge.selfupdate.supervisor import DIR_ENV, RESTART, ROLLBACK, VERSION_ENV
from firmware_ota.downloader import Downloader, DownloadFailed

if TYPE_CHECKING:
    from edge.config import ConcentratorConfig

log = logging.getLogger(__name__)

HEALTH_POLL_S = 0.5


class SelfUpdate:
    """The concentrator's own ``update_firmware`` handler and the health check of a new version.

    ``releases`` and ``version`` are None when the process does not run under the supervisor
    (nothing could restart it): an update is refused then (NOT_SUPERVISED). ``problems`` says
    what keeps this process from being healthy (an empty list: healthy). ``end`` ends the
    process with a code for the supervisor."""

    def __init__(self, *, downloader: Downloader, model: str, health_deadline: float,
                 releases: Releases | None, version: str | None, problems: Callable[[], list[str]],
                 end: Callable[[int], None], outbox: Path | None = None) -> None:
        self.outbox = outbox
        self.downloader = downloader
        self.model = model
        self.health_deadline = health_deadline
        self.releases = releases
        self.version = version
        self._problems = problems
        self._end = end
        self._verdict: asyncio.Future[bool] | None = None

    def handler(self) -> CommandHandler:
        return self.update

    # --- B: the health check ----------------------------------------------------------------------

    def on_trial(self) -> UpdateState | None:
        """The update this process is the trial of, if it is one."""
        if self.releases is None or self.version is None:
            return None
        state = self.releases.state()
        if state is not None and state.phase == "trial" and state.target == self.version:
            return state
        return None

    async def run(self) -> None:
        """The health check, when this process is a version on trial; else nothing."""
        state = self.on_trial()
        if state is None:
            return
        assert self.releases is not None
        self._verdict = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        problems = self._problems()
        while problems and time.monotonic() - started < state.health_deadline:
            await asyncio.sleep(HEALTH_POLL_S)
            problems = self._problems()
        if not problems:
            self.releases.save(state.but(phase="committed"))
            log.info("version %s passed its health check in %.1f s: committed", self.version,
                     time.monotonic() - started)
            if removed := await asyncio.to_thread(self.releases.prune):
                log.info("removed versions %s (neither current nor previous)", ", ".join(removed))
            self._verdict.set_result(True)
            return
        reason = f"version {self.version} failed its health check within {state.health_deadline:g} s: " \
                 + "; ".join(problems)
        self.releases.save(state.but(phase="failed", reason=reason))
        log.error("%s; asking the supervisor to roll back to %s", reason, state.source)
        self._verdict.set_result(False)
        self._end(ROLLBACK)

    # --- the command ---------------------------------------------------------------------------

    async def update(self, params: dict[str, Any]) -> dict[str, Any]:
        signed = signed_manifest(params)
        manifest = self._checked(signed)
        releases, version = self.releases, self.version
        if releases is None or version is None:
            raise CommandFailed("NOT_SUPERVISED", "this concentrator does not run under `gridwire concentrator "
                                "supervise`, which alone can restart it on another version")
        state = releases.state()
        if state is not None and state.target == manifest.version:
            if state.phase == "rolled_back":
                releases.save(state.but(phase="reported"))
                raise CommandFailed("ROLLED_BACK", f"rolled back to {version}: {state.reason}")
            if state.phase == "trial" and version == manifest.version:
                if not await self._health_verdict():
                    await asyncio.Event().wait()  # rolling back: the previous version answers
                state = releases.state() or state
        if version == manifest.version:
            source = state.source if state is not None and state.target == version else None
            return {"firmwareVersion": version, "imageSha256": manifest.sha256, "transferred": source is not None,
                    **({"previousVersion": source} if source else {})}
        try:
            package = await self.downloader.fetch(signed)
        except DownloadFailed as exc:
            raise CommandFailed(exc.code, f"concentrator software {manifest.version}: {exc}") from exc
        try:
            await asyncio.to_thread(releases.install, package, manifest.version)
        except InstallError as exc:
            raise CommandFailed("INSTALL_FAILED", str(exc)) from exc
        releases.save(UpdateState(phase="trial", source=version, target=manifest.version,
                                  firmware_id=manifest.firmware_id, health_deadline=self.health_deadline,
                                  outbox=str(self.outbox) if self.outbox else None,
                                  outbox_schema=outbox_schema.release_schema()))
        await asyncio.to_thread(releases.switch, manifest.version)
        log.info("installed %s beside %s and switched to it: restarting on it", manifest.version, version)
        self._end(RESTART)
        await asyncio.Event().wait()  # never answered here: the next version answers the redelivery
        raise AssertionError("unreachable")

    def _checked(self, signed: SignedManifest) -> Any:
        try:
            manifest = self.downloader.verify(signed)
        except DownloadFailed as exc:
            raise CommandFailed(exc.code, f"concentrator software: {exc}") from exc
        if manifest.kind != CONCENTRATOR_SOFTWARE:
            raise CommandFailed("KIND_MISMATCH", f"{manifest.firmware_id} is {manifest.kind}, not "
                                f"{CONCENTRATOR_SOFTWARE}: a concentrator installs only its own software")
        if self.model not in manifest.device_models:
            raise CommandFailed("MODEL_MISMATCH", f"this concentrator is a {self.model!r}; {manifest.firmware_id} "
                                f"is for {', '.join(manifest.device_models)}")
        return manifest

    async def _health_verdict(self) -> bool:
        while self._verdict is None:
            await asyncio.sleep(HEALTH_POLL_S)
        return await asyncio.shield(self._verdict)


def self_update(config: ConcentratorConfig, *, downloader: Downloader, problems: Callable[[], list[str]],
                end: Callable[[int], None]) -> SelfUpdate:
    """The self-update of a concentrator process: able to update only under the supervisor,
    which names the version and the software directory in the environment."""
    version, directory = os.environ.get(VERSION_ENV), os.environ.get(DIR_ENV)
    releases = Releases(Path(directory)) if version and directory else None
    return SelfUpdate(downloader=downloader, model=config.software.model,
                      health_deadline=config.software.health_deadline, releases=releases,
                      version=version if releases is not None else None, problems=problems, end=end,
                      outbox=Path(config.outbox).absolute())
