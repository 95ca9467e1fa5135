"""The concentrator's own config file (TOML): its id, its broker, its outbox, its meters.

The config is defined by the pydantic models of :mod:`edge.config_model` (their names are
importable from here too, on first use: ``from edge.config import ConcentratorConfig``).
:func:`load_config` reads a file with their lean restatement (:mod:`edge.config_lean`), so that
the concentrator does not load pydantic (issue 15: its memory); only a config the lean classes
refuse is validated again with the pydantic models, for the error: every ConfigError names the
file, the meter and the field as pydantic words it. Secrets (broker password, DLMS keys) never
appear in a log line or a repr. In the file they are sealed with the concentrator's sealing key
(:mod:`edge.config_secrets`), opened here before validation.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.sealing import KeyRing, SealingError
from edge import config_lean
from edge.config_lean import ConfigError
from edge.config_secrets import clear_secret_fields, key_ring_for, open_secrets

if TYPE_CHECKING:
    from pydantic import ValidationError

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """The pydantic models of the config (edge.config_model), imported on first use (PEP 562)."""
    if name.startswith("__"):
        raise AttributeError(name)
    from edge import config_model

    try:
        return getattr(config_model, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def load_config(path: Path | str) -> config_lean.ConcentratorConfig:
    """Read and validate a concentrator config; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    clear = clear_secret_fields(raw)
    try:
        open_secrets(raw, key_ring_for(raw, path.parent))
    except SealingError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if clear:
        log.warning("%s: secrets in clear (%s); seal them with `gridwire secrets seal-config`", path,
                    ", ".join(clear))
    try:
        config = config_lean.ConcentratorConfig.validate(raw)
    except ValueError as refused:
        error = _refusal(path, raw, refused)
        raise error from error.__cause__
    return _resolve_paths(config, path.parent)


def _refusal(path: Path, raw: dict, refused: ValueError) -> Exception:
    """The error for a config the lean classes refused: pydantic's, as it always was."""
    from pydantic import ValidationError

    from edge.config_model import ConcentratorConfig

    try:
        ConcentratorConfig.model_validate(raw)
    except ValidationError as exc:
        error = ConfigError(_describe(path, raw, exc))
        error.__cause__ = exc
        return error
    # The two definitions disagree (tests/edge/test_config_lean.py holds them to the same): refuse
    # with the lean reason rather than run on a config only one of them accepts.
    return ConfigError(f"{path}: {refused}")


def key_ring(config: object) -> KeyRing | None:
    """The concentrator's sealing key ring: its ``secrets_key_file``, else GRIDWIRE_SECRETS_KEY, else None."""
    key_file = getattr(config, "secrets_key_file", None)
    if key_file is not None:
        return KeyRing.from_file(key_file)
    return KeyRing.from_environment()


def _describe(path: Path, raw: dict, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "meters" and isinstance(loc[1], int):
            meters = raw.get("meters", [])
            entry = meters[loc[1]] if loc[1] < len(meters) else {}
            entry = entry if isinstance(entry, dict) else {}
            name = (entry.get("meter_id") or entry.get("meterIndividualId") or entry.get("adapter_config")
                    or entry.get("port") or f"#{loc[1] + 1}")
            # Drop the discriminator tag and validator names pydantic puts in the location.
            fields = [str(part) for part in loc[2:]
                      if not str(part).startswith("function") and str(part) not in ("p1", "dlms", "modbus")]
            where = f"meter {name}: " + (".".join(fields) or "(entry)")
        problems.append(f"{where}: {error['msg']}")
    return f"{path}: " + "; ".join(problems)


def _resolve_paths(config: config_lean.ConcentratorConfig, base: Path) -> config_lean.ConcentratorConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    meters = [m.replace(adapter_config=resolve(m.adapter_config)) if isinstance(m, config_lean.P1Meter) else m
              for m in config.meters]
    state = resolve(config.state)
    fw = config.firmware
    firmware = fw.replace(trusted_keys=[resolve(p) for p in fw.trusted_keys],
                          cache_dir=resolve(fw.cache_dir) if fw.cache_dir else state.parent / "firmware")
    local = config.local
    if local is not None:
        local = local.replace(
            adapters=[a.replace(adapter_config=resolve(a.adapter_config)) for a in local.adapters],
            **{name: resolve(getattr(local, name)) for name in ("ca_file", "cert_file", "key_file", "tls_ca_file",
                                                               "tls_cert_file", "tls_key_file")
               if getattr(local, name) is not None})
    return config.replace(**{"outbox": resolve(config.outbox), "state": state,
                                     "invocation_counters": resolve(config.invocation_counters), "meters": meters,
                                     "firmware": firmware, "local": local, "dlms_keys": resolve(config.dlms_keys),
                                     "secrets_key_file": resolve(config.secrets_key_file)
                                     if config.secrets_key_file else None})


PLACEHOLDER = "CHANGE-ME"


def placeholders(path: Path | str) -> list[str]:
    """The keys (dotted, e.g. ``broker.host``) whose values still hold the packaged default
    config's placeholder ``CHANGE-ME``: what an installer has left to fill in."""
    found: list[str] = []

    def walk(value: object, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif isinstance(value, str) and PLACEHOLDER in value:
            found.append(where)

    walk(tomllib.loads(Path(path).read_text()), "")
    return found
