"""A serial null-modem cable made of two pseudo-terminals, for RTU without hardware.

Each end is a pty slave path (``/dev/pts/N``) that pyserial can open; bytes written to one
end come out of the other. The relay runs in the event loop on the two master fds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tty

logger = logging.getLogger(__name__)


class PtyNullModem:
    """Two connected serial ports: open ``end_a`` in a server and ``end_b`` in a client."""

    def __init__(self) -> None:
        self._masters: tuple[int, int] | None = None
        self._slaves: tuple[int, int] | None = None
        self.end_a = ""
        self.end_b = ""

    async def start(self) -> None:
        master_a, slave_a = os.openpty()
        master_b, slave_b = os.openpty()
        for fd in (slave_a, slave_b):
            tty.setraw(fd)  # no echo, no line discipline: Modbus RTU is binary
        for fd in (master_a, master_b):
            os.set_blocking(fd, False)
        self._masters, self._slaves = (master_a, master_b), (slave_a, slave_b)
        self.end_a, self.end_b = os.ttyname(slave_a), os.ttyname(slave_b)
        loop = asyncio.get_running_loop()
        loop.add_reader(master_a, self._relay, master_a, master_b)
        loop.add_reader(master_b, self._relay, master_b, master_a)

    def _relay(self, source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while no process holds the slave open: nothing to pass on
        if data:
            try:
                os.write(target, data)
            except OSError as exc:
                logger.debug("null modem dropped %d bytes: %s", len(data), exc)

    async def stop(self) -> None:
        if self._masters is None or self._slaves is None:
            return
        loop = asyncio.get_running_loop()
        for fd in self._masters:
            loop.remove_reader(fd)
        for fd in (*self._masters, *self._slaves):
            os.close(fd)
        self._masters = self._slaves = None

    async def __aenter__(self) -> PtyNullModem:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
