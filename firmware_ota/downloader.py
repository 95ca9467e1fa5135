"""The concentrator's end of the chunk protocol: download a signed image once, resumably, into a cache.

:meth:`Downloader.fetch` takes a :class:`SignedManifest` and returns the path of the verified
image in ``<cache_dir>/<sha256>.bin``:

1. the manifest's signature is checked against the concentrator's trusted keys first
   (:class:`SignatureInvalid`, nothing is requested);
2. a cached image is used if its sha256 still matches; else
3. the missing chunks are requested (at most ``window`` requests in flight, each for a run of
   up to ``batch`` consecutive chunks that the server answers chunk by chunk; a request that
   times out is sent again for the chunks still missing) and written into ``<sha256>.part``; ``<sha256>.chunks`` records, after the data is
   synced, which chunks are on disk, so a download cut by a crash or a broker outage resumes
   without asking for any chunk it already has. Data is synced in batches, off the event loop,
   by a task of its own while the workers fetch on: every ``sync_bytes`` (1 MiB) and at least every
   ``sync_interval`` (0.5 s) while anything is unsynced, so a stalled download has its chunks
   recorded too. A crash loses at most the chunks of the batch being written, fetched again.
   Once every chunk is written nothing more is synced: step 4 checks the whole file, and a
   cached image is checked again before each use, so a crash then costs a download at most;
4. the whole file's sha256 must equal the signed one (else :class:`SignatureInvalid`, the
   partial file is discarded) before it is renamed to ``.bin`` and handed to anyone.

Concurrent fetches of one image share one download (a task per sha256), so an image is
downloaded once per concentrator however many meters need it at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from broker import topics
from broker.errors import Invalid, Unavailable
from broker.lean.firmware import (
    CHUNK,
    MAX_CHUNK,
    MAX_CHUNKS_PER_REQUEST,
    REQUEST,
    ChunkError,
    ChunkRequest,
    FirmwareManifest,
    SignedManifest,
)
from broker.mqtt_types import Settle
from broker.session import Message, MqttError, MqttSession, publish_properties
from firmware_ota.signing import SignatureError, verify

log = logging.getLogger(__name__)

SYNC_BYTES = 1 << 20  # chunks written between two syncs of the partial file and its record
SYNC_INTERVAL = 0.5  # seconds: the longest a written chunk stays unrecorded
HASH_STEP = 1 << 20  # bytes read and hashed at a time
_RECORD = 4  # bytes per entry of the .chunks file (big-endian chunk index; the first entry is the chunk size)


class DownloadFailed(Unavailable):
    """The image could not be obtained; ``code`` is the command error code to report."""

    code = "DOWNLOAD_FAILED"


class SignatureInvalid(Invalid, DownloadFailed):
    """The manifest is not signed by a trusted key, or the image is not the one it signs."""

    code = "SIGNATURE_INVALID"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_STEP):
            digest.update(block)
    return digest.hexdigest()


async def sha256_on_loop(path: Path) -> str:
    """:func:`sha256_of` on the event loop, a step (``HASH_STEP`` bytes, about a millisecond of
    CPU) at a time with the loop's other tasks run between steps.

    In a worker thread the hashing leaves the loop free, but the hand-over costs two wake-ups
    (the thread's, then the loop's); on a busy machine those took 1-11 ms, more than hashing a
    1 MiB image takes (bench/README.md, fleet_ota)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_STEP):
            digest.update(block)
            await asyncio.sleep(0)
    return digest.hexdigest()


class PartialImage:
    """An image being downloaded: ``<sha>.part`` (data at its offsets) and ``<sha>.chunks`` (which chunks)."""

    def __init__(self, *, directory: Path, manifest: FirmwareManifest, chunk_size: int) -> None:
        self.manifest = manifest
        self.part = directory / f"{manifest.sha256}.part"
        self.record = directory / f"{manifest.sha256}.chunks"
        self.final = directory / f"{manifest.sha256}.bin"
        self.chunk_size, self.done = self._load(chunk_size)
        self.unsynced: list[int] = []  # written, not yet synced nor recorded
        self.unsynced_bytes = 0
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        self._record_fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self._record_fd).st_size == 0:
            # Synced with the first chunks it records (commit); lost before that, nothing is claimed.
            os.write(self._record_fd, self.chunk_size.to_bytes(_RECORD, "big"))

    def _load(self, chunk_size: int) -> tuple[int, set[int]]:
        try:
            raw = self.record.read_bytes()
        except FileNotFoundError:
            raw = b""
        if len(raw) < _RECORD or not self.part.exists():
            self.record.unlink(missing_ok=True)
            return chunk_size, set()
        size = int.from_bytes(raw[:_RECORD], "big")
        if not 0 < size <= MAX_CHUNK:
            self.record.unlink(missing_ok=True)
            return chunk_size, set()
        count = -(-self.manifest.size // size)
        # A torn last entry (crash mid-append) is ignored: its chunk is fetched again.
        entries = (int.from_bytes(raw[i:i + _RECORD], "big") for i in range(_RECORD, len(raw) - _RECORD + 1, _RECORD))
        return size, {n for n in entries if n < count}

    @property
    def count(self) -> int:
        return -(-self.manifest.size // self.chunk_size)

    def missing(self) -> list[int]:
        return [n for n in range(self.count) if n not in self.done]

    def span(self, index: int) -> tuple[int, int]:
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.manifest.size - offset)

    @property
    def received(self) -> int:
        """Chunks on disk, synced or not (for progress)."""
        return len(self.done) + len(self.unsynced)

    @property
    def complete(self) -> bool:
        """Every chunk written (synced or not)."""
        return self.received >= self.count

    def write(self, index: int, data: bytes) -> None:
        """Write one chunk; it counts as done only once :meth:`commit` has synced and recorded it."""
        os.pwrite(self._fd, data, index * self.chunk_size)
        self.unsynced.append(index)
        self.unsynced_bytes += len(data)

    def take_unsynced(self) -> list[int]:
        """The chunks written since the last take, for one :meth:`commit`."""
        taken, self.unsynced, self.unsynced_bytes = self.unsynced, [], 0
        return taken

    def commit(self, indexes: list[int]) -> None:
        """Sync the data, then record these chunks (the record never claims unsynced data).

        Blocking: run it in a thread. Chunks written meanwhile are not in ``indexes``.
        """
        if not indexes:
            return
        os.fsync(self._fd)
        os.write(self._record_fd, b"".join(index.to_bytes(_RECORD, "big") for index in indexes))
        os.fsync(self._record_fd)
        self.done.update(indexes)

    def close(self) -> None:
        for fd in (self._fd, self._record_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def finish(self) -> Path:
        """Rename the complete, verified file into the cache."""
        os.truncate(self.part, self.manifest.size)
        os.replace(self.part, self.final)
        self.record.unlink(missing_ok=True)
        return self.final

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)


class Downloader:
    """Fetches signed images over ``concentrator/<cid>/firmware/...`` into a cache by sha256."""

    def __init__(self, *, session: MqttSession, concentrator_id: str, cache_dir: Path,
                 trusted: Mapping[str, bytes], chunk_size: int = 32 * 1024, window: int = 4, batch: int = 32,
                 sync_bytes: int = SYNC_BYTES, sync_interval: float = SYNC_INTERVAL,
                 request_timeout: float = 10.0, max_attempts: int = 8, download_timeout: float = 1800.0) -> None:
        if not 0 < chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK}")
        self._session = session
        self.concentrator_id = topics.validate_level(concentrator_id, what="concentrator id")
        self.cache_dir = cache_dir
        self._trusted = dict(trusted)
        self._chunk_size = chunk_size
        self._window = max(1, window)
        self._batch = min(max(1, batch), MAX_CHUNKS_PER_REQUEST)
        self._sync_bytes = max(1, sync_bytes)
        self._sync_interval = sync_interval
        self._request_timeout = request_timeout
        self._max_attempts = max(1, max_attempts)
        self._download_timeout = download_timeout
        self._pending: dict[bytes, _Run] = {}
        self._downloads: dict[str, asyncio.Task[Path]] = {}
        # Figures for tests, benches and the status.
        self.downloads = 0
        # Images being downloaded now, by firmware id: chunks on disk out of all (for metrics).
        self.active: dict[str, PartialImage] = {}
        self.cache_hits = 0
        self.chunks_requested = 0
        self.retries = 0
        cache_dir.mkdir(parents=True, exist_ok=True)

    def route(self) -> None:
        """Set up the chunk subscription before the session connects (see :meth:`MqttSession.route`)."""
        self._session.route(topics.concentrator_firmware(self.concentrator_id, CHUNK), self._on_chunk,
                            now=self._take_chunk)

    async def start(self) -> None:
        """Subscribe to this concentrator's chunk answers (the session must be connected)."""
        await self._session.subscribe(topics.concentrator_firmware(self.concentrator_id, CHUNK), self._on_chunk,
                                      now=self._take_chunk)

    def verify(self, signed: SignedManifest) -> FirmwareManifest:
        """The manifest if a trusted key signed it, else :class:`SignatureInvalid`."""
        try:
            return verify(signed, self._trusted)
        except SignatureError as exc:
            raise SignatureInvalid(str(exc)) from exc

    def cached(self, sha256: str) -> Path | None:
        path = self.cache_dir / f"{sha256}.bin"
        return path if path.exists() else None

    async def fetch(self, signed: SignedManifest) -> Path:
        """The verified image's path in the cache, downloading it first if needed (once per image)."""
        manifest = self.verify(signed)
        task = self._downloads.get(manifest.sha256)
        if task is None:
            task = asyncio.create_task(self._obtain(manifest), name=f"firmware-download:{manifest.firmware_id}")
            self._downloads[manifest.sha256] = task
            task.add_done_callback(lambda done, sha=manifest.sha256: self._forget(sha, done))
        return await asyncio.shield(task)

    def _forget(self, sha256: str, task: asyncio.Task[Path]) -> None:
        if self._downloads.get(sha256) is task:
            del self._downloads[sha256]
        if not task.cancelled() and task.exception() is not None:
            log.info("firmware download of %s failed: %s", sha256[:12], task.exception())

    # --- downloading --------------------------------------------------------------------------
    async def _obtain(self, manifest: FirmwareManifest) -> Path:
        final = self.cache_dir / f"{manifest.sha256}.bin"
        if final.exists():
            if await asyncio.to_thread(sha256_of, final) == manifest.sha256:
                self.cache_hits += 1
                return final
            log.warning("cached firmware %s does not match its sha256; downloading again", final.name)
            final.unlink()
        try:
            async with asyncio.timeout(self._download_timeout):
                return await self._download(manifest)
        except TimeoutError:
            raise DownloadFailed(f"firmware {manifest.firmware_id}: not downloaded within "
                                 f"{self._download_timeout:.0f}s") from None

    async def _download(self, manifest: FirmwareManifest) -> Path:
        partial = PartialImage(directory=self.cache_dir, manifest=manifest, chunk_size=self._chunk_size)
        self.active[manifest.firmware_id] = partial
        try:
            missing = partial.missing()
            if partial.done:
                log.info("firmware %s: resuming download, %d of %d chunks on disk", manifest.firmware_id,
                         len(partial.done), partial.count)
            todo = deque(missing)
            syncing = asyncio.Lock()
            finished = asyncio.Event()
            due = asyncio.Event()  # sync_bytes are written and unsynced: the committer's turn
            async with asyncio.TaskGroup() as group:
                workers = [group.create_task(self._worker(manifest, partial, todo, due),
                                             name=f"firmware-chunks-{worker}")
                           for worker in range(min(self._window, -(-len(missing) // self._batch)))]
                group.create_task(self._committer(partial, syncing, finished, due), name="firmware-sync")
                if workers:  # none when every chunk was on disk already
                    await asyncio.wait(workers)
                finished.set()
                due.set()
            # Complete: nothing more is synced. The whole file is checked against the signed
            # sha256 now and the cached image again before each use, so a crash from here on
            # costs a download, never a wrong image.
            partial.take_unsynced()
        except BaseExceptionGroup as failures:
            failure = next((e for e in failures.exceptions if isinstance(e, DownloadFailed)), None)
            if failure is not None:
                raise failure from None
            raise
        finally:
            self.active.pop(manifest.firmware_id, None)
            if partial.unsynced:
                try:
                    # A failed or cancelled download keeps what it wrote, for the next attempt to resume.
                    partial.commit(partial.take_unsynced())
                except OSError as exc:
                    log.warning("firmware %s: could not record the chunks on disk: %s", manifest.firmware_id, exc)
            partial.close()
        digest = await sha256_on_loop(partial.part)
        if digest != manifest.sha256:
            partial.discard()
            raise SignatureInvalid(f"firmware {manifest.firmware_id}: downloaded image has sha256 {digest}, "
                                   f"the signed manifest says {manifest.sha256}; discarded")
        self.downloads += 1
        path = partial.finish()
        log.info("firmware %s (%d bytes) downloaded and verified", manifest.firmware_id, manifest.size)
        return path

    async def _worker(self, manifest: FirmwareManifest, partial: PartialImage, todo: deque[int],
                      due: asyncio.Event) -> None:
        while todo:
            # The next run of consecutive missing chunks, at most ``batch`` of them: one request.
            run = [todo.popleft()]
            while todo and len(run) < self._batch and todo[0] == run[-1] + 1:
                run.append(todo.popleft())
            await self._fetch_run(manifest, partial, run)
            if partial.unsynced_bytes >= self._sync_bytes and not partial.complete:
                due.set()  # the committer syncs; this worker asks for its next run meanwhile

    async def _committer(self, partial: PartialImage, syncing: asyncio.Lock, finished: asyncio.Event,
                         due: asyncio.Event) -> None:
        """Syncs what the workers wrote when ``due`` (sync_bytes of it) and every sync_interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), self._sync_interval)
            due.clear()
            if finished.is_set():
                return
            if partial.unsynced and not syncing.locked():
                await self._commit(partial, syncing)

    @staticmethod
    async def _commit(partial: PartialImage, syncing: asyncio.Lock) -> None:
        # In a thread: the other workers go on fetching and writing while the disk syncs. A
        # cancelled caller still waits for the thread, so the files are never closed under it.
        async with syncing:
            sync = asyncio.ensure_future(asyncio.to_thread(partial.commit, partial.take_unsynced()))
            try:
                await asyncio.shield(sync)
            except asyncio.CancelledError:
                await sync
                raise

    async def _fetch_run(self, manifest: FirmwareManifest, partial: PartialImage, run: list[int]) -> None:
        """Get chunks ``run`` (consecutive indexes) onto disk: one request, each chunk its own answer.

        An attempt that times out asks again for the chunks still missing only.
        """
        topic = topics.concentrator_firmware(self.concentrator_id, REQUEST)
        waiting = _Run(partial)
        missing = list(run)
        for attempt in range(1, self._max_attempts + 1):
            # Time spent offline is not an attempt: wait for the broker first.
            await self._session.connected.wait()
            correlation = uuid.uuid4().bytes
            waiting.expect({partial.span(index)[0]: index for index in missing})
            self._pending[correlation] = waiting
            requests = self._requests(manifest, partial, missing)
            try:
                async with asyncio.timeout(self._request_timeout):
                    for request in requests:
                        self.chunks_requested += request.count
                        await self._session.publish(topic, request.to_wire(), qos=1,
                                                    properties=publish_properties(correlation_data=correlation))
                    await waiting.done.wait()
            except (TimeoutError, MqttError) as exc:
                self.retries += 1
                log.info("firmware %s chunks %d-%d: %s on attempt %d, %d chunks missing", manifest.firmware_id,
                         missing[0], missing[-1], type(exc).__name__, attempt, len(waiting.expected))
            finally:
                self._pending.pop(correlation, None)
            if waiting.refused is not None:
                code, reason = waiting.refused
                if code == ChunkError.BAD_REQUEST and any(request.count > 1 for request in requests):
                    # A server from before multi-chunk requests: one chunk per request from now on.
                    log.warning("firmware server refused a multi-chunk request (%s); asking chunk by chunk", reason)
                    self._batch = 1
                    waiting.refused = None
                    missing = sorted(waiting.expected.values())
                    continue
                raise DownloadFailed(f"firmware {manifest.firmware_id}: server refused the chunk at "
                                     f"{waiting.refused_offset}: {code} {reason}".rstrip())
            missing = sorted(waiting.expected.values())
            if not missing:
                return
        raise DownloadFailed(f"firmware {manifest.firmware_id}: no answer for the chunk at "
                             f"{partial.span(missing[0])[0]} after {self._max_attempts} attempts")

    def _requests(self, manifest: FirmwareManifest, partial: PartialImage, missing: list[int]) -> list[ChunkRequest]:
        """Requests for ``missing`` (sorted): one per run of consecutive chunks, ``batch`` chunks at most."""
        requests = []
        i = 0
        while i < len(missing):
            j = i + 1
            while j < len(missing) and j - i < self._batch and missing[j] == missing[j - 1] + 1:
                j += 1
            offset, length = partial.span(missing[i])
            if j - i > 1:
                length = partial.chunk_size
            requests.append(ChunkRequest(firmware_id=manifest.firmware_id, offset=offset, length=length, count=j - i))
            i = j
        return requests

    def _take_chunk(self, message: Message, settle: Settle) -> bool:
        """A chunk handled in the session's network callback, without a task of its own (its
        write is one ``pwrite`` to the page cache); acknowledged once written. A failure (the
        disk) propagates, and the session hands the message to :meth:`_on_chunk` as usual."""
        self._deliver(message)
        settle(None)
        return True

    async def _on_chunk(self, message: Message) -> None:
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        waiting = self._pending.get(message.correlation_data or b"")
        if waiting is None:
            # A late answer to a request we gave up on, or one from before a restart.
            log.debug("firmware chunk without a waiting request dropped")
            return
        waiting.deliver(bytes(message.payload), dict(message.user_properties))


class _Run:
    """The chunks one :meth:`Downloader._fetch_run` waits for, written to disk as they arrive."""

    def __init__(self, partial: PartialImage) -> None:
        self.partial = partial
        self.expected: dict[int, int] = {}  # offset -> chunk index, still missing
        self.done = asyncio.Event()
        self.refused: tuple[str, str] | None = None
        self.refused_offset = -1

    def expect(self, expected: dict[int, int]) -> None:
        self.expected = expected
        self.done.clear()

    def deliver(self, data: bytes, props: dict[str, str]) -> None:
        if "error" in props:
            self.refused = (props["error"], props.get("reason", ""))
            self.refused_offset = min(self.expected, default=-1)
            self.done.set()
            return
        try:
            offset = int(props.get("offset", ""))
        except ValueError:
            log.warning("firmware chunk without a valid offset dropped")
            return
        index = self.expected.get(offset)
        if index is None:
            return  # a duplicate, or an answer to an attempt already served
        if len(data) != self.partial.span(index)[1]:
            log.warning("firmware chunk at %d: %d bytes instead of %d; asked again", offset, len(data),
                        self.partial.span(index)[1])
            return
        self.partial.write(index, data)
        del self.expected[offset]
        if not self.expected:
            self.done.set()
