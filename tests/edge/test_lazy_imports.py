"""The concentrator loads what its meters need (issue 15: RSS): a concentrator with only DLMS
meters loads no pymodbus and no meter simulator, and without a sealed secret, a ciphered meter
or an update no cryptography (nor does the CLI that runs it), nor the contract's pydantic models
(broker/schemas: the concentrator's messages are broker/lean); the packages' names still import on
first use (edge/dlms, edge/modbus and edge/p1 resolve them lazily, PEP 562). Fresh processes: this test
process has imported everything already."""

from __future__ import annotations

import subprocess
import sys

import pytest

NOT_FOR_DLMS = ["pymodbus", "edge.modbus.adapter", "edge.modbus.simulator", "edge.dlms.simulator",
                "edge.dlms.cosem_server", "edge.p1.simulator", "edge.p1.reader", "cryptography",
                # The contract's pydantic models are the cloud's: the concentrator's messages are broker/lean.
                "broker.schemas"]
# The concentrator as the unit runs it (gridwire.entry, gridwire.concentrator_process; the typer CLI
# imports the cloud's commands) reads its config and profiles with edge/config_lean.py and
# devices/profiles/lean.py: no pydantic at all (the models that define them load only to word a refusal).
NO_PYDANTIC = ["pydantic", "pydantic_core", "annotated_types", "typing_inspection", "edge.config_model",
               "devices.profiles.model", "devices.adapter_config", "devices.modbus.register_map",
               "edge.dlms.config", "edge.modbus.config"]

DLMS_ONLY = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from edge.config import load_config
from edge.meter_set import MeterSet
import edge.concentrator
import gridwire.cli
config = Path(sys.argv[1]) / "c.toml"
config.write_text('concentrator_id = "conc-1"\\n[broker]\\nhost = "127.0.0.1"\\n'
                  '[[meters]]\\nprotocol = "dlms"\\nmeter_id = "m-1"\\nhost = "127.0.0.1"\\nport = 4059\\n'
                  'security = "none"\\n')
meters = MeterSet(config=load_config(config), sink=None, clock=lambda: datetime.now(UTC))
meters.close()
import edge.timesync, edge.ota, edge.selfupdate.agent, firmware_ota.downloader
print(" ".join(sorted(name for name in {names} if name in sys.modules)))
"""


def loaded_after(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_concentrator_with_only_dlms_meters_loads_no_modbus_nor_simulators(tmp_path) -> None:
    assert loaded_after(DLMS_ONLY.replace("{names}", repr(NOT_FOR_DLMS)), str(tmp_path)) == ""


def test_a_concentrator_with_only_dlms_meters_loads_no_pydantic(tmp_path) -> None:
    code = DLMS_ONLY.replace("import gridwire.cli\n", "import gridwire.entry, gridwire.concentrator_process\n")
    assert "gridwire.cli" not in code
    assert loaded_after(code.replace("{names}", repr(NO_PYDANTIC)), str(tmp_path)) == ""


def test_a_refused_config_still_gets_pydantic_s_words(tmp_path) -> None:
    """Only then does pydantic load: the error is the one the config's definition gives."""
    code = ("import sys\nfrom pathlib import Path\nfrom edge.config import ConfigError, load_config\n"
            "path = Path(sys.argv[1]) / 'c.toml'\n"
            "path.write_text('concentrator_id = \"conc-1\"\\n[[meters]]\\nprotocol = \"dlms\"\\nmeter_id = \"m-1\"\\n'"
            " 'host = \"h\"\\nport = 0\\nsecurity = \"none\"\\n')\n"
            "try:\n    load_config(path)\nexcept ConfigError as exc:\n    print(exc, 'pydantic' in sys.modules)\n")
    assert loaded_after(code, str(tmp_path)).endswith(
        "c.toml: meter m-1: port: Input should be greater than or equal to 1 True")


def test_the_street_light_service_loads_no_pydantic() -> None:
    """A fleet of simulated lights in one process: its messages are broker/lean's."""
    names = ["pydantic", "pydantic_core", "broker.schemas"]
    code = f"import sys, edge.devices.service\nprint(' '.join(n for n in {names!r} if n in sys.modules))"
    assert loaded_after(code) == ""


@pytest.mark.parametrize("package, name, module", [
    ("edge.modbus", "ModbusSimulator", "edge.modbus.simulator"),
    ("edge.modbus", "load_map", "devices.modbus.register_map"),
    ("edge.dlms", "DlmsMeterSimulator", "edge.dlms.simulator"),
    ("edge.p1", "P1Simulator", "edge.p1.simulator"),
])
def test_a_name_of_the_package_imports_on_first_use(package: str, name: str, module: str) -> None:
    code = (f"import sys, {package}\nassert {module!r} not in sys.modules\nfrom {package} import {name}\n"
            f"assert {module!r} in sys.modules\nprint({name}.__module__)")
    assert loaded_after(code)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import edge.dlms

    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        edge.dlms.Nothing  # noqa: B018
