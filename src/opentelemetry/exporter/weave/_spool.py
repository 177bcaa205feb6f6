"""A durable spool: calls the service could not take wait on disk and are re-sent later.

Why SQLite (stdlib ``sqlite3``), in WAL mode, one file per directory: several processes may
share a spool directory, and SQLite gives every one of them atomic transactions over one file,
with readers never blocking the writer, and crash safety (a SIGKILL mid-write leaves the last
committed state) without a daemon. Files with atomic renames would give single-file atomicity
only: claiming a batch of calls across processes, replacing a call by id and keeping a total
under a byte cap would each need a lock protocol of our own.

The rules:

- A call is stored as the two JSON halves it is sent as, keyed by (project id, call id):
  spooling the same call again replaces it (and makes it the newest), never duplicates it.
  Calls are rebuilt with the payload models' validation when re-sent.
- ``max_bytes`` bounds the stored halves' bytes (the file is somewhat larger: SQLite pages and
  the WAL); past it the oldest calls are deleted first, and counted.
- Re-sending claims calls oldest first in one transaction, with a lease: a claimed call is
  no other process's to send until the lease ends, so no call is sent by two processes at once;
  the claims of a process killed mid-send expire with their lease. A call is deleted once the
  service took it or refused it for good; a call the service answered with a retryable
  failure (503, 429) is released at once, one without an answer (a timeout, the deadline:
  the request may have arrived) keeps its lease until it ends, then is sent again.
- Only the spool's own file (:data:`SPOOL_FILE_NAME`) is ever opened; other files in the
  directory are never touched. A SQLite database of another application at that path is left
  as it is and the spool is off (with a warning). A file there that is not a database, or is
  ours and unreadable, is renamed aside (``…corrupt-<time>-<pid>``, never deleted, for whoever
  wants to look at it) and a fresh spool is started. A stored call that no longer validates is
  deleted and counted with the calls the cap forced out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._config import ConfigError
from opentelemetry.exporter.weave._delivery import CallFailure, CallSender, DeliveryReport
from opentelemetry.exporter.weave._models import call_from_json
from opentelemetry.exporter.weave._stats import LossReason

__all__ = [
    "SPOOL_FILE_NAME",
    "SpoolActivity",
    "SpoolStore",
    "SpoolUnavailableError",
    "Spooling",
    "open_spool",
]

logger = logging.getLogger(__package__)

SPOOL_FILE_NAME = "weave-otel-spool.sqlite3"
_APPLICATION_ID = 0x57454F54  # "WEOT": marks the file as this exporter's spool
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    start_json BLOB NOT NULL,
    end_json BLOB NOT NULL,
    size INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    UNIQUE (project_id, call_id)
)
"""
# Waiting this long for another process's transaction is plenty (they are short) and keeps
# a contended spool from eating much of an export's deadline.
_BUSY_TIMEOUT_MS = 1000
_ROW_OVERHEAD_BYTES = 64
"""What a stored call costs beyond its JSON (key, sequence, lease), for the cap."""

_CallKey = tuple[str, str]

# Connections a forked child inherited: SQLite must not use (or close) them in the child, so
# they are kept referenced forever instead of being closed by the garbage collector.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


class SpoolUnavailableError(Exception):
    """The spool file is another application's database: the spool is off."""


_SPOOL_ERRORS = (sqlite3.Error, OSError, SpoolUnavailableError)
"""What using the spool may raise: the spool fails, the export goes on."""


@dataclass(frozen=True)
class Claim:
    """Calls claimed for re-sending, oldest first, and how many stored calls were unreadable."""

    calls: tuple[WeaveCall, ...]
    unreadable: int = 0


def open_spool(directory: str, max_bytes: int) -> SpoolStore | None:
    """The spool of ``directory``, or None (with a warning) if its file is not ours to use.

    A directory that cannot be created or written is a wrong setting: a ``ConfigError``.
    """
    try:
        return SpoolStore(directory, max_bytes)
    except (SpoolUnavailableError, sqlite3.Error) as error:
        logger.warning("Weave spool is off: %s", error)
        return None
    except OSError as error:
        raise ConfigError(f"spool_dir: cannot use {directory!r} as a spool: {error}") from None


def _identity(connection: sqlite3.Connection) -> tuple[int, int]:
    """The file's application id, and how many schema objects it holds: read in one statement,
    so from one state of the file (two reads could straddle another process's commit)."""
    application_id, tables = connection.execute(
        "SELECT (SELECT application_id FROM pragma_application_id),"
        " (SELECT count(*) FROM sqlite_master)"
    ).fetchone()
    return application_id, tables


def _key(call: WeaveCall) -> _CallKey:
    return (call.project_id, call.id)


class SpoolStore:
    """The spool file of ``directory``, shared safely by every process that opens it."""

    def __init__(
        self, directory: str, max_bytes: int, *, now: Callable[[], float] = time.time
    ) -> None:
        self.path = os.path.join(directory, SPOOL_FILE_NAME)
        self._max_bytes = max_bytes
        self._now = now  # wall-clock time: leases are compared across processes
        self._owner = _new_owner()
        self._lock = threading.Lock()
        self._closed = False
        os.makedirs(directory, exist_ok=True)
        self._connection: sqlite3.Connection | None = self._open()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as error:
            if not _is_corrupt(error):  # busy, locked, read-only: the file itself is fine
                raise
            aside = f"{self.path}.corrupt-{int(time.time())}-{os.getpid()}"
            logger.warning(
                "Weave spool %s is unreadable (%s): moved aside to %s, starting a new spool",
                self.path,
                error,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):  # a stale WAL must not be replayed into the new
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # used under self._lock, by whichever worker exports
        )
        try:
            application_id, tables = _identity(connection)
            if application_id == 0 and not tables:  # a new file: made ours in one transaction
                # So that a process opening it meanwhile sees no table, or the tables and our
                # id, never the tables alone (which is another application's database).
                # Before the file's first write: lets deleted calls' pages be given back.
                connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
                with contextlib.suppress(sqlite3.OperationalError):  # busy: another sets it
                    connection.execute("PRAGMA journal_mode = WAL")  # not in a transaction
                connection.execute("BEGIN IMMEDIATE")
                try:
                    application_id, tables = _identity(connection)  # made meanwhile?
                    if application_id == 0 and not tables:
                        connection.execute(_SCHEMA)
                        connection.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                        application_id = _APPLICATION_ID
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            # An existing spool is only read here: another process may be writing it.
            if application_id != _APPLICATION_ID:
                raise SpoolUnavailableError(
                    f"{self.path} is a SQLite database of another application; "
                    "it is left untouched and the spool is off"
                )
            connection.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes
            connection.execute("SELECT 1 FROM calls LIMIT 1").fetchone()
        except BaseException:
            connection.close()
            raise
        return connection

    def put(self, calls: Sequence[WeaveCall]) -> int:
        """Store ``calls`` (replacing any of the same ids); how many calls the cap forced out."""
        rows = [(*_key(call), call.start_json, call.end_json, _stored_size(call)) for call in calls]
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO calls"
                " (project_id, call_id, start_json, end_json, size) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return self._evict_over_cap(connection)

    def _evict_over_cap(self, connection: sqlite3.Connection) -> int:
        total = connection.execute("SELECT coalesce(sum(size), 0) FROM calls").fetchone()[0]
        excess = total - self._max_bytes
        if excess <= 0:
            return 0
        evicted = 0
        last_seq = 0
        for seq, size in connection.execute("SELECT seq, size FROM calls ORDER BY seq"):
            evicted += 1
            last_seq = seq
            excess -= size
            if excess <= 0:
                break
        connection.execute("DELETE FROM calls WHERE seq <= ?", (last_seq,))
        return evicted

    def claim(self, max_calls: int, max_bytes: int, lease_seconds: float) -> Claim:
        """The oldest unclaimed calls (at least one, then up to ``max_bytes``), now leased to us.

        Stored calls that fail validation are deleted and counted in ``unreadable``.
        """
        now = self._now()
        with self._transaction() as connection:
            _release_leases_of_dead_processes(connection, now)
            chosen: list[int] = []
            size_so_far = 0
            for seq, size in connection.execute(
                "SELECT seq, size FROM calls WHERE lease_until <= ? ORDER BY seq LIMIT ?",
                (now, max_calls),
            ):
                if chosen and size_so_far + size > max_bytes:
                    break
                chosen.append(seq)
                size_so_far += size
            if not chosen:
                return Claim(())
            lease_until = now + lease_seconds
            connection.executemany(
                "UPDATE calls SET lease_owner = ?, lease_until = ? WHERE seq = ?",
                [(self._owner, lease_until, seq) for seq in chosen],
            )
            rows = [
                connection.execute(
                    "SELECT seq, start_json, end_json FROM calls WHERE seq = ?", (seq,)
                ).fetchone()
                for seq in chosen
            ]
            calls: list[WeaveCall] = []
            unreadable: list[int] = []
            for seq, start_json, end_json in rows:
                call = _rebuilt(start_json, end_json)
                if call is None:
                    unreadable.append(seq)
                else:
                    calls.append(call)
            if unreadable:
                logger.warning(
                    "Weave spool %s: %d stored call(s) are unreadable and were deleted",
                    self.path,
                    len(unreadable),
                )
                connection.executemany(
                    "DELETE FROM calls WHERE seq = ?", [(seq,) for seq in unreadable]
                )
            return Claim(tuple(calls), len(unreadable))

    def settle(self, calls: Sequence[WeaveCall]) -> None:
        """Delete claimed ``calls``: the service took them, or refused them for good.

        A call spooled again since it was claimed is a newer version, unclaimed: it stays.
        """
        with self._transaction() as connection:
            connection.executemany(
                "DELETE FROM calls WHERE project_id = ? AND call_id = ? AND lease_owner = ?",
                [(*_key(call), self._owner) for call in calls],
            )
            connection.execute("PRAGMA incremental_vacuum")

    def release(self, calls: Sequence[WeaveCall]) -> None:
        """End our claims on ``calls``, still undelivered: anyone may send them again."""
        with self._transaction() as connection:
            connection.executemany(
                "UPDATE calls SET lease_owner = NULL, lease_until = 0"
                " WHERE project_id = ? AND call_id = ? AND lease_owner = ?",
                [(*_key(call), self._owner) for call in calls],
            )

    def stored(self) -> tuple[int, int]:
        """How many calls are stored, and their bytes as the cap counts them."""
        with self._transaction() as connection:
            count, size = connection.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM calls"
            ).fetchone()
        return int(count), int(size)

    def after_fork(self) -> None:
        """A forked child's own connection, lock and claims (the parent's are not the child's).

        The lock is replaced, not taken: a parent's thread may have held it at the fork.
        """
        self._lock = threading.Lock()
        if self._connection is not None:
            _INHERITED_CONNECTIONS.append(self._connection)
        self._connection = None  # opened at first use: nothing here can fail in a fork hook
        self._owner = _new_owner()

    def close(self) -> None:
        """Release the file. A write that comes later (a last export) still reaches the disk."""
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``) under the store's thread lock.

        Immediate: the write lock is taken first, so a claim's read and update are one step for
        every process sharing the file.
        """
        with self._lock:
            if self._connection is None and not self._closed:
                self._connection = self._connect()
            connection = self._connection or self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                if connection is not self._connection:
                    connection.close()


_NOT_A_DATABASE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    code: int | None = getattr(error, "sqlite_errorcode", None)
    if code is None:  # Python 3.10 has no error codes: its messages, then
        return any(text in str(error) for text in ("not a database", "malformed"))
    return code & 0xFF in _NOT_A_DATABASE_CODES  # extended codes keep the primary in the low byte


def _stored_size(call: WeaveCall) -> int:
    return len(call.start_json) + len(call.end_json) + _ROW_OVERHEAD_BYTES


def _answered(failures: Sequence[CallFailure]) -> list[WeaveCall]:
    """The undeliverable calls the service answered (503, 429…), free to send again at once.

    A call with no answer (a timeout, the deadline) may still be in flight, or may have
    arrived: it keeps its lease until that ends, so no other sender duplicates it meanwhile.
    """
    return [
        failure.call
        for failure in failures
        if failure.kind is LossReason.UNDELIVERABLE and failure.result.status_code is not None
    ]


def _rebuilt(start_json: bytes, end_json: bytes) -> WeaveCall | None:
    try:
        return call_from_json(start_json, end_json)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class SpoolActivity:
    """What the spool did during one send, for the counters."""

    spooled: int = 0
    """Calls of the batch written to the spool instead of being lost."""
    resent: DeliveryReport = field(default_factory=DeliveryReport)
    """Spooled calls re-sent: those the service took (``delivered``) or refused for good
    (``failures``); those still undeliverable stay spooled and are not in it."""
    evicted: int = 0
    """Spooled calls given up: forced out by the size cap, or unreadable."""

    @property
    def empty(self) -> bool:
        return self == SpoolActivity()


_DRAIN_CHUNK_CALLS = 256
_DRAIN_CHUNK_BYTES = 16 * 1024 * 1024
_LEASE_MARGIN_SECONDS = 30.0
"""A claim outlives the export's deadline by this much: a live sender is done well before."""
_RECHECK_SECONDS = 60.0
"""How often a process that found its spool empty looks again (another process may share it)."""


class Spooling:
    """Keeps the calls ``inner`` could not deliver in the spool, and re-sends them later.

    Undeliverable calls (retryable failures still failing at the deadline) are spooled instead
    of lost. Spooled calls are re-sent, oldest first, in chunks, by the same deadline: at the
    first send of a process, after a send the service answered (no undeliverable call), and,
    while the service answers, every :data:`_RECHECK_SECONDS` (another process may have
    spooled). Calls refused for good (and the size-capped, and the unreadable) are deleted;
    ``on_activity`` hears of each, for the counters.
    """

    def __init__(
        self,
        inner: CallSender,
        store: SpoolStore,
        monotonic: Callable[[], float],
        on_activity: Callable[[SpoolActivity], None],
    ) -> None:
        self._inner = inner
        self._store = store
        self._monotonic = monotonic
        self._on_activity = on_activity
        self._drain_due = True
        self._last_drain = -float("inf")
        self._drain_lock = threading.Lock()

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        report = self._inner.send(calls, deadline)
        lost = [failure for failure in report.failures if failure.kind is LossReason.UNDELIVERABLE]
        activity = SpoolActivity()
        if lost:
            activity = self._spool(lost)
            if activity.spooled:
                kept = tuple(f for f in report.failures if f.kind is not LossReason.UNDELIVERABLE)
                report = replace(report, failures=kept)
        elif self._drain_due or self._monotonic() - self._last_drain >= _RECHECK_SECONDS:
            activity = self._drain(deadline)
        if not activity.empty:
            self._on_activity(activity)
        return report

    def after_fork(self) -> None:
        """A forked child is a new process: its own connection, and a re-send at its first send."""
        self._store.after_fork()
        self._drain_lock = threading.Lock()
        self._drain_due = True

    def close(self) -> None:
        self._store.close()

    def keep(self, calls: Sequence[WeaveCall]) -> int:
        """Spool ``calls`` without sending them (the queue at a shutdown past its deadline).

        How many were spooled: 0 if the spool could not take them.
        """
        if not calls:
            return 0
        activity = self._put(calls)
        if not activity.empty:
            self._on_activity(activity)
        return activity.spooled

    def _spool(self, lost: list[CallFailure]) -> SpoolActivity:
        activity = self._put([failure.call for failure in lost])
        if activity.spooled:
            first = lost[0]
            answer = first.result.status_code or "no answer"
            logger.warning(
                "Weave did not take %d call(s) at %s (%s: %s): kept in the spool %s",
                activity.spooled,
                first.route,
                answer,
                first.result.reason,
                self._store.path,
            )
        return activity

    def _put(self, calls: Sequence[WeaveCall]) -> SpoolActivity:
        try:
            evicted = self._store.put(calls)
        except _SPOOL_ERRORS as error:
            logger.warning("Weave spool %s: could not store calls: %s", self._store.path, error)
            return SpoolActivity()
        self._drain_due = True
        if evicted:
            logger.warning(
                "Weave spool %s is full: the %d oldest call(s) were deleted",
                self._store.path,
                evicted,
            )
        return SpoolActivity(spooled=len(calls), evicted=evicted)

    def _drain(self, deadline: float) -> SpoolActivity:
        # One drain at a time per process: concurrent exports would only compete for claims.
        if not self._drain_lock.acquire(blocking=False):
            return SpoolActivity()
        try:
            return self._drain_locked(deadline)
        except _SPOOL_ERRORS as error:
            logger.warning("Weave spool %s: could not re-send: %s", self._store.path, error)
            return SpoolActivity()
        finally:
            self._last_drain = self._monotonic()
            self._drain_lock.release()

    def _drain_locked(self, deadline: float) -> SpoolActivity:
        resent = DeliveryReport()
        unreadable = 0
        while self._monotonic() < deadline:
            lease = deadline - self._monotonic() + _LEASE_MARGIN_SECONDS
            claim = self._store.claim(_DRAIN_CHUNK_CALLS, _DRAIN_CHUNK_BYTES, lease)
            unreadable += claim.unreadable
            if not claim.calls:
                if not claim.unreadable:
                    self._drain_due = False
                    break
                continue
            report = self._inner.send(claim.calls, deadline)
            still = {_key(f.call) for f in report.failures if f.kind is LossReason.UNDELIVERABLE}
            self._store.settle([call for call in claim.calls if _key(call) not in still])
            final = tuple(f for f in report.failures if _key(f.call) not in still)
            resent += replace(report, failures=final)
            if still:  # the service is down again: the rest waits for it
                self._store.release(_answered(report.failures))
                break
        return SpoolActivity(resent=resent, evicted=unreadable)


_HOST = socket.gethostname()


def _new_owner() -> str:
    """Who holds a lease: this host and process, and a nonce (a pid can be used again)."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex}"


def _release_leases_of_dead_processes(connection: sqlite3.Connection, now: float) -> None:
    """Leases held by a process of this host that is gone (SIGKILLed mid-send) end now.

    Its request may have arrived; the service keeps one call per id (see the README), and
    waiting out the lease would leave the calls to no one if every sharing process exits.
    """
    owners = [
        owner
        for (owner,) in connection.execute(
            "SELECT DISTINCT lease_owner FROM calls"
            " WHERE lease_until > ? AND lease_owner IS NOT NULL",
            (now,),
        )
    ]
    dead = [owner for owner in owners if _is_dead_here(owner)]
    connection.executemany(
        "UPDATE calls SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?",
        [(owner,) for owner in dead],
    )


def _is_dead_here(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdecimal() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's, or not ours to ask
        return False
    return False
