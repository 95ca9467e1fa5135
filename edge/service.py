"""Enabling the concentrator's systemd unit from ``gridwire concentrator provision``.

On an appliance running systemd, ``systemctl enable``; in an install root (a throwaway one in
tests, an image being prepared), ``systemctl --root=ROOT enable``, which makes the same
symlinks without a running systemd. Where neither can be done, the answer says what would
have been enabled and how to do it, and nothing fails: provisioning's files are what matter.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNIT = "gridwire-concentrator.service"


@dataclass(frozen=True, slots=True)
class Enabling:
    """What was done about the unit: ``enabled`` and a sentence saying how, or why not."""

    enabled: bool
    report: str


def enable_service(root: Path | None = None, *, unit: str = UNIT) -> Enabling:
    """Enable ``unit`` on this machine (``root`` None) or in the install root ``root``."""
    systemctl = shutil.which("systemctl")
    in_root = root is not None and root.resolve() != Path("/")
    if systemctl is None:
        return Enabling(False, f"would enable {unit}: there is no systemctl here")
    if not in_root and not Path("/run/systemd/system").is_dir():
        return Enabling(False, f"would enable {unit}: systemd is not running here "
                               f"(on the appliance: systemctl enable {unit})")
    args = [systemctl, *([f"--root={root}"] if in_root else []), "enable", unit]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    where = f" in {root}" if in_root else ""
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        return Enabling(False, f"could not enable {unit}{where}: {reason[-1] if reason else done.returncode}")
    return Enabling(True, f"enabled {unit}{where} (systemctl{' --root' if in_root else ''} enable)")
