"""Load and validate meter profiles (``devices/profiles/*.yaml``), with ``extends:`` inheritance.

A profile names the COSEM objects an adapter reads and maps each OBIS code to an OMDP
operational property (reusing :class:`devices.adapter_config.PropertyMapping`, ``source`` being
the OBIS code). A child profile inherits its parent's fields; its ``registers`` are merged
into the parent's by ``source`` (a child entry replaces the parent's entry for the same OBIS
code, new ones are appended). Errors name the file and the field.

Profiles are read with the lean classes of :mod:`devices.profiles.lean` (no pydantic on the
concentrator's run path); the pydantic models of :mod:`devices.profiles.model` define them and word
the error of a refused one, as they always did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from broker.errors import Invalid
from devices.profiles.lean import MeterProfile

PROFILE_DIR = Path(__file__).resolve().parent
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"


class ProfileError(Invalid):
    """A profile file that cannot be read, inherits in a loop, or is invalid (names file and field)."""


def load_profile(name: str, *, directory: Path | None = None) -> MeterProfile:
    """Load profile ``name`` (file ``<name>.yaml`` in ``directory``), resolving ``extends``."""
    directory = directory or PROFILE_DIR
    document, path = _resolve(name, directory, chain=())
    try:
        return MeterProfile.validate(document)
    except ValueError as refused:
        # Refused: the pydantic definition words the error, as it always has.
        from pydantic import ValidationError

        from devices.adapter_config import describe_errors
        from devices.profiles.model import MeterProfile as Defined

        try:
            Defined.model_validate(document)
        except ValidationError as exc:
            raise ProfileError(describe_errors(path, exc)) from exc
        raise ProfileError(f"{path}: {refused}") from None


def _read(name: str, directory: Path) -> tuple[dict[str, Any], Path]:
    if not re.match(_NAME_RE, name):
        raise ProfileError(f"profile name {name!r} is not a valid file name")
    path = directory / f"{name}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile {name!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ProfileError(f"{path}: the top level must be a mapping of fields")
    return document, path


def _resolve(name: str, directory: Path, *, chain: tuple[str, ...]) -> tuple[dict[str, Any], Path]:
    if name in chain:
        raise ProfileError(f"profile {name!r} extends itself: {' -> '.join((*chain, name))}")
    document, path = _read(name, directory)
    parent_name = document.pop("extends", None)
    if parent_name is None:
        return document, path
    if not isinstance(parent_name, str):
        raise ProfileError(f"{path}: extends: must be a profile name")
    parent, _ = _resolve(parent_name, directory, chain=(*chain, name))
    return _merge(parent, document), path


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = {**parent, **child}
    if "registers" in parent and "registers" in child:
        if not isinstance(child["registers"], list) or not isinstance(parent["registers"], list):
            return merged  # let validation report the wrong type, with the child's file
        by_source: dict[Any, Any] = {}
        for entry in [*parent["registers"], *child["registers"]]:
            key = entry.get("source") if isinstance(entry, dict) else id(entry)
            by_source[key] = entry
        merged["registers"] = list(by_source.values())
    return merged
