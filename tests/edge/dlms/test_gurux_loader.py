"""gurux-dlms in part (edge/dlms/gurux_loader.py): every name of every gurux package and every
object the factory makes are what the full import gives; a DLMS concentrator loads only part of
gurux (issue 15: RSS); an ``__init__`` or factory written otherwise is a loud error. Fresh
processes: this test process may hold either form of the package."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.dlms.gurux_loader import Bindings, GuruxLayoutError, factory_table

# Every package of gurux-dlms 1.0.203, every name each binds, described; then every object type
# through the factory. With the loader installed first, or not at all (the full import).
DESCRIBE = """
import importlib, json, pkgutil, sys
if sys.argv[1] == "in part":
    import edge.dlms  # installs the loader
import gurux_dlms
from gurux_dlms._GXObjectFactory import _GXObjectFactory
from gurux_dlms.enums.ObjectType import ObjectType

def describe(value):
    if isinstance(value, type(sys)):
        return ["module", value.__name__]
    if isinstance(value, type) or callable(value):
        return ["object", getattr(value, "__module__", None), getattr(value, "__qualname__", None)]
    return ["value", repr(value)]

packages = sorted(info.name for info in pkgutil.walk_packages(gurux_dlms.__path__, "gurux_dlms.") if info.ispkg)
names = {}
for package in ["gurux_dlms", *packages]:
    module = importlib.import_module(package)
    # The names the package's __init__ binds, as the full import sees them (dir() after import).
    names[package] = sorted(n for n in json.loads(sys.argv[2]).get(package, []))
# As ``from package import name`` sees it (a submodule no __init__ binds is imported by it).
described = {package: {name: describe(getattr(__import__(package, fromlist=[name]), name)) for name in listed}
             for package, listed in names.items()}
made = {member.name: type(_GXObjectFactory.createObject(member)).__qualname__ for member in ObjectType}
made["unknown"] = [type(_GXObjectFactory.createObject(65000)).__qualname__, _GXObjectFactory.createObject(65000).objectType]
try:
    _GXObjectFactory.createObject(None)
except ValueError as exc:
    made["None"] = str(exc)
print(json.dumps({"names": described, "made": made, "partial": type(gurux_dlms).__name__}))
"""

# The names each package binds once fully imported: the full import's dir(), less dunders.
NAMES = """
import importlib, json, pkgutil, gurux_dlms
packages = ["gurux_dlms", *sorted(info.name for info in pkgutil.walk_packages(gurux_dlms.__path__, "gurux_dlms.")
                                  if info.ispkg)]
print(json.dumps({p: [n for n in dir(importlib.import_module(p)) if not n.startswith("__")] for p in packages}))
"""


def run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_name_and_every_object_type_is_what_the_full_import_gives() -> None:
    names = json.dumps(run(NAMES))
    full, partial = run(DESCRIBE, "full", names), run(DESCRIBE, "in part", names)
    assert (full["partial"], partial["partial"]) == ("module", "LazyPackage")
    assert sum(len(listed) for listed in full["names"].values()) > 400
    for package, described in full["names"].items():
        assert partial["names"][package] == described, package
    assert len(full["made"]) > 80
    assert partial["made"] == full["made"]


LOADED = """
import sys
from datetime import UTC, datetime
from pathlib import Path
import edge.concentrator
from edge.config import load_config
from edge.meter_set import MeterSet
config = Path(sys.argv[1]) / "c.toml"
config.write_text('concentrator_id = "conc-1"\\n[broker]\\nhost = "127.0.0.1"\\n'
                  '[[meters]]\\nprotocol = "dlms"\\nmeter_id = "m-1"\\nhost = "127.0.0.1"\\nport = 4059\\n'
                  'security = "none"\\n')
meters = MeterSet(config=load_config(config), sink=None, clock=lambda: datetime.now(UTC))
import edge.dlms.adapter, edge.dlms.client, edge.dlms.push, edge.dlms.image_transfer, edge.commands.key_change
meters.close()
print(" ".join(sorted(name for name in sys.modules if name.startswith("gurux_dlms"))))
"""

# Modules of gurux-dlms a concentrator has no use for: the XML translator and client, the
# manufacturer settings (and urllib with them), M-Bus, PLC setups, and interface classes it
# never reads.
NOT_FOR_THE_CONCENTRATOR = ["gurux_dlms.GXDLMSTranslator", "gurux_dlms.GXDLMSXmlClient",
                            "gurux_dlms.manufacturersettings.GXManufacturerCollection",
                            "gurux_dlms.objects.GXDLMSMBusClient", "gurux_dlms.objects.GXDLMSGprsSetup",
                            "gurux_dlms.objects.GXDLMSPrimeNbOfdmPlcMacCounters", "gurux_dlms.objects.GXDLMSAccount",
                            "gurux_dlms.objects.GXDLMSActivityCalendar"]


def test_a_dlms_concentrator_loads_gurux_in_part(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", LOADED, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"gurux_dlms.GXDLMSClient", "gurux_dlms.secure.GXDLMSSecureClient",
            "gurux_dlms.objects.GXDLMSRegister", "gurux_dlms._GXObjectFactory"} <= loaded
    assert loaded & set(NOT_FOR_THE_CONCENTRATOR) == set()
    assert len(loaded) < 250  # of about 400


def test_an_init_that_does_more_than_import_is_refused() -> None:
    assert Bindings("p", "'''doc'''\nfrom .A import A\nfrom .B import *\nname = 'p'\n", origin="p").names == {
        "A": ("A", "A")}
    with pytest.raises(GuruxLayoutError, match="does more than import its modules"):
        Bindings("p", "from .A import A\nA.patch()\n", origin="p/__init__.py")
    with pytest.raises(GuruxLayoutError, match="not a literal"):
        Bindings("p", "name = make()\n", origin="p/__init__.py")


def test_a_factory_written_otherwise_is_refused() -> None:
    good = ("from .objects.GXDLMSData import GXDLMSData\nfrom .objects.GXDLMSObject import GXDLMSObject\n"
            "class _GXObjectFactory:\n    @classmethod\n    def createObject(cls, ot):\n"
            "        if ot is None:\n            raise ValueError()\n"
            "        if ot == ObjectType.DATA:\n            ret = GXDLMSData()\n"
            "        else:\n            ret = GXDLMSObject(ot)\n        return ret\n")
    assert factory_table(good, origin="f") == ({"DATA": (".objects.GXDLMSData", "GXDLMSData", False)},
                                               (".objects.GXDLMSObject", "GXDLMSObject", True))
    with pytest.raises(GuruxLayoutError):
        factory_table(good.replace("ret = GXDLMSData()", "ret = make(ot)"), origin="f")
    with pytest.raises(GuruxLayoutError):
        factory_table(good.replace("ot == ObjectType.DATA", "ot in TABLE"), origin="f")


def test_the_loader_itself_is_light() -> None:
    """importlib.abc would import importlib.resources, tempfile, random, bz2 and lzma (about 1 MiB):
    the finder and loaders follow the protocols without its base classes."""
    code = ("import sys\nimport edge.dlms\nfrom gurux_dlms.GXDLMSClient import GXDLMSClient\n"
            "print(type(sys.modules['gurux_dlms']).__name__, 'importlib.abc' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["LazyPackage", "False"], done.stderr
