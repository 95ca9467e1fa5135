"""The README's table of cloud settings lists exactly the variables the settings model reads."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from cloud.platform import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]


def variables_read() -> set[str]:
    """``GRIDWIRE_<SECTION>_<FIELD>`` for a section's fields, ``GRIDWIRE_<FIELD>`` for the others."""
    names = set()
    for name, field in PlatformSettings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= {f"GRIDWIRE_{name}_{sub}".upper() for sub in field.annotation.model_fields}
        else:
            names.add(f"GRIDWIRE_{name}".upper())
    return names


def test_the_readme_lists_every_cloud_setting_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Cloud settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(GRIDWIRE_[A-Z_]+[A-Z])`", table))
    assert documented == variables_read()
