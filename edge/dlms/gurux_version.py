"""The gurux-dlms version the fixes in :mod:`edge.dlms.gurux_fixes` were written for, and the
check that the installed one is it (read without importlib.metadata where it can be)."""

from __future__ import annotations

import os
import re
import sys

from broker.errors import Unavailable

PINNED_GURUX_VERSION = "1.0.203"


class GuruxVersionError(Unavailable):
    """The installed gurux-dlms is not the version our server fixes were written for."""


def check_version(installed: str | None = None) -> str:
    """Return the gurux-dlms version (installed, or as given), raising GuruxVersionError if not pinned."""
    if installed is None:
        installed = installed_version("gurux-dlms")
        if installed is None:
            raise GuruxVersionError("gurux-dlms is not installed (pip install 'gridwire[edge]')")
    if installed != PINNED_GURUX_VERSION:
        raise GuruxVersionError(
            f"gurux-dlms {installed} is installed but edge.dlms.gurux_fixes was written for "
            f"{PINNED_GURUX_VERSION}; install gurux-dlms=={PINNED_GURUX_VERSION} or re-check every fix"
        )
    return installed


def installed_version(distribution: str) -> str | None:
    """``importlib.metadata.version(distribution)`` (None: not installed), read from the one
    ``.dist-info`` of the first sys.path directory that holds it, without importing
    importlib.metadata: it imports email, zipfile and csv, about 2 MiB of a concentrator's memory
    that nothing else there needs (issue 15: RSS). Anything else (an ``.egg-info``, two candidates,
    no Version header, nothing found) is left to importlib.metadata."""
    wanted = _normalized(distribution)
    for entry in sys.path:
        try:
            names = [name for name in os.listdir(entry or ".") if name.endswith((".dist-info", ".egg-info"))
                     and _normalized(name.partition("-")[0]) == wanted]
        except OSError:  # not a directory (a zip holds no gurux), or gone
            continue
        if len(names) == 1 and names[0].endswith(".dist-info"):
            version = _metadata_version(os.path.join(entry or ".", names[0], "METADATA"))
            if version is not None:
                return version
        if names:
            break
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():  # the end of the headers
                    break
                key, _, value = line.partition(":")
                if key.strip().lower() == "version":
                    return value.strip()
    except OSError:
        pass
    return None


__all__ = ["PINNED_GURUX_VERSION", "GuruxVersionError", "check_version", "installed_version"]
