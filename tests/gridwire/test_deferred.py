"""gridwire/deferred.py: a deferred standard-library module is not loaded by ``import``, loads on
first use and then behaves as the real module, wherever it was bound (issue 15: RSS). Each case
runs in a fresh interpreter, since the test process has imported urllib.request already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What paho-mqtt's client does with urllib.request (its _get_proxy, with PySocks installed), read
# through paho's own reference to the module.
PAHO_USE = """
import json, sys
import paho.mqtt.client as client
before = {name: name in sys.modules and not type(sys.modules[name]).__name__ == "Deferred"
          for name in ("urllib.request", "email", "http.client")}
request = client.urllib.request
answers = {
    "has_proxy_bypass": hasattr(request, "proxy_bypass"),
    "bypass_listed": bool(request.proxy_bypass("broker.example")),
    "bypass_other": bool(request.proxy_bypass("cloud.example")),
    "proxies": request.getproxies(),
}
real = sys.modules["urllib.request"]
from urllib.request import urlopen
answers["real_after_use"] = type(real).__name__ == "module" and client.urllib.request is real
answers["urlopen"] = urlopen is real.urlopen
print(json.dumps({"before": before, "answers": answers}))
"""

DEFER = "from gridwire import deferred; deferred.defer('urllib.request')\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "mqtt_proxy": "http://proxy.example:3128",
           "no_proxy": "broker.example"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)


def test_paho_imports_without_loading_urllib_request_and_its_use_answers_the_same() -> None:
    deferred, plain = run(DEFER + PAHO_USE), run(PAHO_USE)
    assert deferred.returncode == 0, deferred.stderr
    assert plain.returncode == 0, plain.stderr
    lazy, eager = json.loads(deferred.stdout), json.loads(plain.stdout)
    assert lazy["before"] == {"urllib.request": False, "email": False, "http.client": False}
    assert eager["before"]["urllib.request"] is True
    assert lazy["answers"] == eager["answers"]
    assert lazy["answers"]["proxies"]["mqtt"] == "http://proxy.example:3128"
    assert lazy["answers"]["bypass_listed"] is True and lazy["answers"]["bypass_other"] is False
    assert lazy["answers"]["real_after_use"] is True and lazy["answers"]["urlopen"] is True


def test_a_reference_to_the_placeholder_taken_before_the_load_keeps_working() -> None:
    result = run(DEFER + "from urllib import request\nimport sys\n"
                 "assert not sys.modules['urllib.request'].__class__ is type(sys)\n"
                 "print(request.quote('a b'), request.Request('http://x.example/').host,\n"
                 "      request.urlopen is sys.modules['urllib.request'].urlopen)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["a%20b", "x.example", "True"]


def test_the_import_system_probes_do_not_load_it() -> None:
    result = run(DEFER + "import importlib, sys, urllib.request\n"
                 "import urllib.request as again\n"
                 "print(hasattr(again, '__path__'), again.__spec__, importlib.import_module('urllib.request') is again,\n"
                 "      'email' in sys.modules, 'http.client' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "None", "True", "False", "False"]


def test_deferring_a_module_already_imported_is_refused() -> None:
    result = run("import urllib.request\nfrom gridwire import deferred\n"
                 "try:\n    deferred.defer('urllib.request')\n"
                 "except deferred.DeferredImportError as exc:\n    print('refused:', exc)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: urllib.request is already imported")


def test_a_module_that_does_not_exist_fails_on_first_use_and_again_after() -> None:
    result = run("from gridwire import deferred\ndeferred.defer('json.no_such_module')\n"
                 "import json.no_such_module as missing\n"
                 "for _ in range(2):\n"
                 "    try:\n        missing.anything\n"
                 "    except ModuleNotFoundError as exc:\n        print(exc.name)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["json.no_such_module", "json.no_such_module"]


GURUX_SAVE = """
import sys
from edge.dlms import gurux_loader  # noqa: F401  (installs the loader, as edge.dlms does)
import edge.dlms.client  # noqa: F401
from gurux_dlms.objects import GXDLMSObjectCollection, GXDLMSRegister, GXDLMSClock
loaded = sorted(m for m in ("xml.etree.ElementTree", "xml.dom.minidom", "pyexpat")
                if type(sys.modules.get(m)).__name__ == "module")  # not a deferred placeholder
objects = GXDLMSObjectCollection()
objects.append(GXDLMSRegister("1.0.1.8.0.255"))
objects.append(GXDLMSClock("0.0.1.0.0.255"))
objects.save(sys.argv[1])
print(",".join(loaded) or "-")
"""


def test_gurux_loads_without_xml_and_its_xml_save_writes_the_same_file(tmp_path: Path) -> None:
    """gurux's object collection imports ElementTree and minidom for its XML save and load only."""
    lazy_file, eager_file = tmp_path / "deferred.xml", tmp_path / "plain.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    defer_all = "from gridwire import deferred\nfor m in deferred.CONCENTRATOR: deferred.defer(m)\n"
    lazy = subprocess.run([sys.executable, "-c", defer_all + GURUX_SAVE, str(lazy_file)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    eager = subprocess.run([sys.executable, "-c", GURUX_SAVE, str(eager_file)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
    assert lazy.returncode == 0, lazy.stderr
    assert eager.returncode == 0, eager.stderr
    assert lazy.stdout.strip() == "-"
    assert "xml.dom.minidom" in eager.stdout
    assert lazy_file.read_text() == eager_file.read_text()
    assert "<LN>1.0.1.8.0.255</LN>" in lazy_file.read_text()
