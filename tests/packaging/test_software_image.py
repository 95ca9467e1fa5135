"""The over-the-air image of the concentrator's software (``package_concentrator.py --software``),
built from the offline bundle's wheels: it installs A/B beside the running version like any
update, and the installed tree's ``bin/gridwire`` runs from wherever it was unpacked."""

from __future__ import annotations

import sys
from pathlib import Path

from edge.selfupdate.releases import Releases
from tests.packaging.conftest import packager, run


def test_the_software_image_installs_beside_and_runs_from_its_release(built: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    _, bundle = built
    image = packager().software_image(bundle, tmp_path / "ota", interpreter=sys.executable)
    releases = Releases(tmp_path / "software", factory=tmp_path / "factory")
    tree = releases.install(image, "0.1.0+ota1")
    releases.switch("0.1.0+ota1")
    assert releases.current() == ("0.1.0+ota1", tree)
    assert not list(tree.rglob("__pycache__"))  # nothing compiled for the build machine's paths
    done = run(tree / "bin" / "gridwire", "concentrator", "supervise", "--help")
    assert done.returncode == 0 and "roll back" in done.stdout, done.stderr
    imported = run(tree / "bin" / "gridwire", "--help")
    assert imported.returncode == 0, imported.stderr
    where = run(sys.executable, "-P", "-c", "import edge; print(edge.__file__)", PYTHONPATH=str(tree / "lib"))
    assert where.stdout.strip().startswith(str(tree / "lib")), where.stdout
