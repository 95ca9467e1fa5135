"""The child-process helper the demo and the test fixtures run their servers with."""

from __future__ import annotations

import sys

import pytest

from gridwire.procs import ManagedProcess


def test_a_running_process_is_not_started_a_second_time(tmp_path) -> None:
    """A second start used to replace the process it tracked, leaving the first one running
    (and holding its port) out of reach of stop()."""
    server = ManagedProcess(argv=[sys.executable, "-c", "import time; time.sleep(600)"], log=tmp_path / "log")
    server.start()
    try:
        assert server.proc is not None
        first = server.proc.pid
        with pytest.raises(RuntimeError, match="running already"):
            server.start()
        assert server.proc.pid == first and server.running
    finally:
        server.stop()
    assert not server.running
    server.start()  # once stopped it starts again
    server.stop()
