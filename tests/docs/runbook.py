"""Runs a runbook written in Markdown (docs/DEPLOY.md) as an operator would: its shell blocks in
order, in bash, as written.

A block's info string says how the test treats it:

- ```` ```sh ````: run as it is. Variables carry over to the next block (every block runs with
  ``set -a`` and the next one starts from what the last one exported), the way they would in
  the operator's one shell; each block runs with ``set -euo pipefail``, so a failing command
  fails the test with the block's output.
- ```` ```sh settings ````: the variables an operator sets for their host. The test asserts the
  block assigns exactly the names it supplies, then uses its own values (free ports, temporary
  directories, the test's database and InfluxDB).
- ```` ```sh background ````: each line is a long-running process (the operator runs it in a
  terminal of its own, or as a systemd service); the test starts each one, with the variables
  so far, and stops them all at the end.
- ```` ```sh host ````: changes to the host the test may not make on a shared machine
  (packages, system users, systemd); the test checks them against what they stand for.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gridwire.procs import ManagedProcess

_BLOCK = re.compile(r"^```sh(?:[ \t]+(\w+))?[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
KINDS = ("run", "settings", "background", "host")


@dataclass(frozen=True)
class Block:
    kind: str
    text: str
    line: int  # where it starts in the document

    def commands(self) -> list[str]:
        """Its lines that are not blank or comments (a trailing backslash joins lines)."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def blocks(markdown: str) -> list[Block]:
    """The shell blocks of ``markdown``, in order."""
    found = []
    for match in _BLOCK.finditer(markdown):
        kind = match.group(1) or "run"
        if kind not in KINDS:
            raise ValueError(f"line {markdown.count(chr(10), 0, match.start()) + 1}: unknown block kind {kind!r}")
        found.append(Block(kind=kind, text=match.group(2), line=markdown.count("\n", 0, match.start()) + 1))
    return found


def assigned(block: Block) -> list[str]:
    """The variable names a settings block assigns (``NAME=value`` or ``export NAME=value``)."""
    names = []
    for command in block.commands():
        for word in shlex.split(command.removeprefix("export "), comments=True):
            names.append(word.split("=", 1)[0])
    return names


@dataclass
class Runbook:
    """One operator's shell: ``directory`` is its working directory, ``env`` its environment."""

    directory: Path
    env: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.directory / ".runbook-state.sh"
        self.state.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in self.env.items()))

    def _script(self, body: str) -> str:
        return f"set -euo pipefail\nset -a\n. {shlex.quote(str(self.state))}\n{body}\n"

    def run(self, block: Block, *, timeout: float = 300) -> str:
        """Run ``block`` as written; return what it printed. Fails with its output if it fails."""
        script = self._script(block.text) + f"set +a\nexport -p > {shlex.quote(str(self.state))}.new\n"
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=self.directory, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise AssertionError(f"DEPLOY.md block at line {block.line} exited {done.returncode}:\n"
                                 f"{block.text}\n--- output ---\n{output[-6000:]}")
        Path(f"{self.state}.new").replace(self.state)
        self.outputs.append(output)
        return done.stdout

    def start(self, block: Block) -> list[ManagedProcess]:
        """Start each command of a background block, with the variables so far."""
        started = []
        for n, command in enumerate(block.commands()):
            name = re.sub(r"[^\w.-]+", "-", command)[:60].strip("-")
            process = ManagedProcess(argv=["bash", "--noprofile", "--norc", "-c", self._script(f"exec {command}")],
                                     log=self.directory / "logs" / f"{block.line}-{n}-{name}.log", cwd=self.directory,
                                     env=self.env)
            process.start()
            self.processes.append(process)
            started.append(process)
        return started

    def stop(self) -> None:
        """Stop every process started, newest first (the concentrator before the broker)."""
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        """The tail of each background process's log (for a failure's message)."""
        return "\n".join(f"--- {p.log.name} ---\n{p.log.read_text(errors='replace')[-2000:]}"
                         for p in self.processes if p.log.exists())
