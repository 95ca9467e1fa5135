"""The leak guard (tests/fixtures/leaks.py) on a small suite run in its own pytest process: it
fails exactly the tests that leave a task, a thread or a child process running, and the
fixtures of broader scope that finish with theirs, and none that clean up or whose server (or
a worker process of that server) a session fixture holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.leaks import descendants

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = '''
pytest_plugins = ["tests.fixtures.leaks"]
'''

SUITE = '''
import asyncio, os, signal, subprocess, sys, threading
import os
from pathlib import Path

import pytest

from tests.fixtures.leaks import descendants

from gridwire.procs import ManagedProcess

release = threading.Event()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    proc = ManagedProcess(argv=[sys.executable, "-c", "import time; time.sleep(600)"],
                          log=tmp_path_factory.mktemp("server") / "log")
    proc.start()
    yield proc
    proc.stop()


# A server that starts a worker process per request (SIGUSR1), as PostgreSQL does per client,
# and ends them when it stops.
FORKING = """
import os, signal, sys, time
workers = []
def work(*_):
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    workers.append(pid)
def stop(*_):
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    sys.exit(0)
signal.signal(signal.SIGUSR1, work)
signal.signal(signal.SIGTERM, stop)
print("serving", flush=True)
while True:
    signal.pause()
"""


@pytest.fixture(scope="session")
def forking(tmp_path_factory):
    log = tmp_path_factory.mktemp("forking") / "log"
    proc = ManagedProcess(argv=[sys.executable, "-c", FORKING], log=log)
    proc.start()
    while "serving" not in log.read_text():  # its handlers are in place
        assert proc.running
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def careless(tmp_path_factory):
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc  # never stopped: the guard names this fixture


async def test_task_leaked():
    asyncio.get_running_loop().create_task(asyncio.Event().wait(), name="forgotten")


async def test_task_cancelled_and_awaited():
    task = asyncio.get_running_loop().create_task(asyncio.Event().wait(), name="tidy")
    await asyncio.sleep(0)  # let it start before it is cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_thread_leaked():
    threading.Thread(target=release.wait, name="forgotten-thread").start()


def test_thread_joined():
    done = threading.Event()
    thread = threading.Thread(target=done.wait, name="joined")
    thread.start()
    done.set()
    thread.join()


def test_process_leaked():
    subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_grandchild_orphaned(tmp_path_factory):
    # The child starts its own session and exits without waiting for the child it started.
    pids = tmp_path_factory.getbasetemp() / "orphan.pid"
    subprocess.run([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
                    "'import time; time.sleep(600)']); open(sys.argv[1], 'w').write(str(p.pid))", str(pids)],
                   start_new_session=True, check=True)


def test_a_session_server_restarted_is_the_fixtures(server):
    server.stop()
    server.start()


def test_a_session_servers_workers_are_its(forking):
    os.kill(forking.proc.pid, signal.SIGUSR1)
    while not any(p.parent == forking.proc.pid for p in descendants()):
        assert forking.running


def test_the_server_still_runs(server, careless):
    assert server.running and careless.poll() is None


def test_zz_last(server, tmp_path_factory):
    release.set()
    os.kill(int((tmp_path_factory.getbasetemp() / "orphan.pid").read_text()), signal.SIGKILL)
'''


def test_the_guard_fails_exactly_the_leaks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("GRIDWIRE_TEST_EXITING_SECONDS", "0.5")
    before = descendants()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "asyncio")
    # What the suite leaked on purpose is adopted here once its pytest exits (as a test's orphans
    # would be): each ends with that pytest's pipes or was killed; collect them.
    for process in descendants() - before:
        os.waitpid(process.pid, 0)
    errors = {line.split("::")[1].split()[0] for line in result.outlines if line.startswith("ERROR ")}
    output = result.stdout.str()
    # The module's fixtures finish after its last test, so that is where the careless one shows.
    assert errors == {"test_task_leaked", "test_thread_leaked", "test_process_leaked", "test_grandchild_orphaned",
                      "test_zz_last"}, output
    assert "tasks left running when the function-scoped event loop closed: forgotten (Event.wait)" in output
    assert "threads left running: forgotten-thread" in output
    assert "fixture 'careless' finished with child processes left running" in output
    reports = [line for line in result.outlines if "left running" in line and not line.startswith("ERROR ")]
    assert len(reports) == 5, reports  # nothing of the server the session fixture restarted
    result.assert_outcomes(passed=10, errors=5)
