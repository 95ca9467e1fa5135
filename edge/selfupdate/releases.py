"""The concentrator's software on disk, installed A/B: each version a tree of its own beside the
others, the one to run named by a symlink that is swapped atomically, and the update's state.

Under the software directory (``/var/lib/gridwire/software`` on an appliance: the service may
write there, not in ``/opt``)::

    releases/<version>/bin/gridwire   a version's tree (a virtualenv, or any tree with bin/gridwire)
    current -> releases/<version>     what the supervisor starts; absent: the factory tree
    previous -> releases/<version>    what a rollback goes back to; absent: the factory tree
    update.json                       the update under way (:class:`UpdateState`)

The factory tree is the one the Debian package installed (``/opt/gridwire/venv``); no update
touches it, so there is always a tree to start. Every change of a link or of the state is a new
file renamed over the old one (with the directory fsynced), so a SIGKILL or a power cut at any
moment leaves ``current`` naming either the old version or the new one, never neither; a
half-unpacked tree has a ``.partial-`` name no link points to, removed by the next install.

Standard library only (and ``broker.errors``, itself standard library only): the supervisor (``edge/selfupdate/supervisor.py``) imports this and
must run whatever the installed versions hold.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from broker.errors import Invalid

if TYPE_CHECKING:
    from tarfile import TarInfo

log = logging.getLogger(__name__)

FACTORY = "factory"
STATE_FILE = "update.json"
ENTRY_POINT = PurePosixPath("bin/gridwire")


class InstallError(Invalid):
    """A package that cannot be installed: not a tar archive, an unsafe member, no entry point."""


@dataclass(frozen=True, slots=True)
class UpdateState:
    """One update of the concentrator's software from ``source`` to ``target``.

    ``phase``: ``trial`` (switched; the target runs its health check), ``committed`` (it passed),
    ``failed`` (the target failed its check: the supervisor rolls back), ``rolled_back`` (back on
    the source; ``reason`` says why), ``reported`` (the rollback was answered to the cloud)."""

    phase: str
    source: str
    target: str
    firmware_id: str
    health_deadline: float
    reason: str | None = None
    # The outbox and the schema the source version declared: a rollback downgrades the outbox
    # until that schema reads it (None: an update from before this was recorded).
    outbox: str | None = None
    outbox_schema: int | None = None

    def but(self, **changes: object) -> UpdateState:
        return UpdateState(**{**asdict(self), **changes})  # type: ignore[arg-type]


class Releases:
    """The software directory ``root``; ``factory`` is the package's own tree (None: none)."""

    def __init__(self, root: Path, *, factory: Path | None = None) -> None:
        self.root = root
        self.factory = factory
        self.releases = root / "releases"
        self.current_link = root / "current"
        self.previous_link = root / "previous"
        self.state_file = root / STATE_FILE

    # --- which tree ------------------------------------------------------------------------------

    def current(self) -> tuple[str, Path]:
        """The version to start and its tree: ``current``'s, or the factory's if it names no
        usable tree."""
        return self._resolve(self.current_link)

    def previous(self) -> tuple[str, Path]:
        return self._resolve(self.previous_link)

    def _resolve(self, link: Path) -> tuple[str, Path]:
        try:
            target = Path(os.readlink(link))
        except OSError:
            target = None
        if target is not None:
            tree = target if target.is_absolute() else link.parent / target
            if (tree / ENTRY_POINT).is_file():
                return tree.name, tree
        if self.factory is None:
            raise InstallError(f"no software to start: {link} names no tree with {ENTRY_POINT} and there is "
                               "no factory tree")
        return FACTORY, self.factory

    def tree(self, version: str) -> Path:
        return self.releases / _checked_version(version)

    # --- installing and switching -------------------------------------------------------------

    def install(self, archive: Path, version: str) -> Path:
        """Unpack ``archive`` (a tar, possibly compressed, of a tree with ``bin/gridwire``) as
        ``releases/<version>``, replacing an earlier unpacking of that version. Check the archive
        (its signature and digest) before calling this: it only refuses unsafe members."""
        # Here, not at the top: the supervisor, which stays resident, imports this module and never
        # unpacks nor prunes (issue 15: RSS); the concentrator's update agent does.
        import shutil
        import tarfile

        final = self.tree(version)
        if self._current_target() == final:
            raise InstallError(f"version {version} is the running one; it cannot be unpacked over itself")
        self.releases.mkdir(parents=True, exist_ok=True)
        for stale in self.releases.glob(".partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = self.releases / f".partial-{version}"
        partial.mkdir()
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                _check_members(members)
                tar.extractall(partial, members=members)  # noqa: S202 - members checked above
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise InstallError(f"cannot unpack {archive.name}: {exc}") from exc
        except InstallError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        entry = partial / ENTRY_POINT
        if not entry.is_file() or not os.access(entry, os.X_OK):
            shutil.rmtree(partial, ignore_errors=True)
            raise InstallError(f"the package of version {version} has no executable {ENTRY_POINT}")
        _sync_tree(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        _sync_dir(self.releases)
        return final

    def switch(self, version: str) -> None:
        """Make ``version`` current and what ran so far previous (two atomic link swaps; a kill
        between them leaves the old version current)."""
        tree = self.tree(version)
        if not (tree / ENTRY_POINT).is_file():
            raise InstallError(f"version {version} is not installed")
        running = self._current_target()
        if running is None:
            _remove_link(self.previous_link)
        else:
            _link(self.previous_link, running)
        _link(self.current_link, tree)

    def roll_back(self) -> str:
        """Make ``previous`` current again (the factory tree if it names none); the version now current."""
        try:
            version, tree = self.previous()
        except InstallError:
            version, tree = FACTORY, Path()
        if version == FACTORY:
            _remove_link(self.current_link)
        else:
            _link(self.current_link, tree)
        return version

    def prune(self) -> list[str]:
        """Remove every installed version but ``current`` and ``previous`` (and half-unpacked
        trees); the versions removed. Run once an update is committed."""
        import shutil

        keep = {self._resolved(self.current_link), self._resolved(self.previous_link)}
        removed = []
        for tree in sorted(self.releases.glob("*")) if self.releases.is_dir() else []:
            if tree.resolve() not in keep:
                shutil.rmtree(tree, ignore_errors=True)
                removed.append(tree.name)
        return removed

    def _resolved(self, link: Path) -> Path | None:
        try:
            return (link.parent / os.readlink(link)).resolve()
        except OSError:
            return None

    def _current_target(self) -> Path | None:
        try:
            version, tree = self.current()
        except InstallError:  # no factory tree known here: the running version is the factory's
            return None
        return None if version == FACTORY else tree

    # --- the update's state ---------------------------------------------------------------------

    def state(self) -> UpdateState | None:
        """The update under way, if any. A state file that cannot be read is moved aside (to
        ``update.json.bad``) and counts as none: the current version runs, committed, rather
        than nothing running at all."""
        try:
            raw = json.loads(self.state_file.read_text())
            return UpdateState(**raw)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            bad = self.state_file.with_name(f"{STATE_FILE}.bad")
            os.replace(self.state_file, bad)
            log.error("%s is not an update state (%s): moved to %s; the current version runs as committed",
                      self.state_file, exc, bad)
            return None

    def save(self, state: UpdateState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{STATE_FILE}.tmp")
        with open(tmp, "w") as out:
            json.dump(asdict(state), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_file)
        _sync_dir(self.root)


def _checked_version(version: str) -> str:
    if not version or version.startswith(".") or "/" in version or "\0" in version or version == FACTORY:
        raise InstallError(f"{version!r} cannot name a release")
    return version


def _check_members(members: list[TarInfo]) -> None:
    """Refuse what could write outside the tree: absolute or ``..`` names, devices, hard links
    out of the archive, and any member under a symlink the archive makes (a symlink itself may
    point anywhere: a virtualenv's bin/python names the system's Python)."""
    links = {PurePosixPath(m.name) for m in members if m.issym()}
    names = {PurePosixPath(m.name) for m in members}
    for member in members:
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise InstallError(f"unsafe member {member.name!r}: outside the tree")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise InstallError(f"unsafe member {member.name!r}: not a file, directory or link")
        if member.islnk() and PurePosixPath(member.linkname) not in names:
            raise InstallError(f"unsafe member {member.name!r}: a hard link out of the archive")
        if any(parent in links for parent in name.parents):
            raise InstallError(f"unsafe member {member.name!r}: under a symlink")


def _link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` (relative to the link's directory) by renaming a new link over it."""
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    _sync_dir(link.parent)


def _remove_link(link: Path) -> None:
    link.unlink(missing_ok=True)
    _sync_dir(link.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(_tree: Path) -> None:
    """Get a freshly unpacked tree onto the disk before it gets its final name: one sync of every
    file system (a virtualenv is thousands of files; an fsync each took seconds on a loaded box)."""
    os.sync()
