"""SQLite storage of received call starts and ends, merged into calls on read."""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from typing import Any, Literal

from opentelemetry.exporter.weave._call import END_ONLY_FIELDS
from opentelemetry.exporter.weave._models import StartedCallSchemaForInsert

__all__ = ["CallStore", "ObjectTypeCollisionError", "call_status", "threads_of"]

_START_FIELDS = tuple(StartedCallSchemaForInsert.model_fields)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    start_json TEXT,
    end_json TEXT,
    start_seq INTEGER,
    end_seq INTEGER,
    start_writes INTEGER NOT NULL DEFAULT 0,
    end_writes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, id)
)
"""

# A repeated half (a client retrying after a lost response) replaces the stored one but keeps
# its first position, so retries do not reorder calls. Every write is counted, so a test can
# still tell that a half was sent twice.
_UPSERT = """
INSERT INTO calls (project_id, id, {half}_json, {half}_seq, {half}_writes) VALUES (?, ?, ?, ?, 1)
ON CONFLICT (project_id, id) DO UPDATE SET
    {half}_json = excluded.{half}_json,
    {half}_seq = COALESCE(calls.{half}_seq, excluded.{half}_seq),
    {half}_writes = calls.{half}_writes + 1
"""
_OBJECT_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS files (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (project_id, digest)
)
""",
    # An object's versions: version_index counts from 0 in creation order, the highest is
    # the latest. A value stored again is the version it already is, as in the service.
    """
CREATE TABLE IF NOT EXISTS objs (
    project_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    val_json TEXT NOT NULL,
    version_index INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, object_id, digest)
)
""",
)

_UPSERT_START = _UPSERT.format(half="start")
_UPSERT_END = _UPSERT.format(half="end")

_WRITE_COUNTS = """
SELECT id, SUM({half}_writes) FROM calls
WHERE {half}_writes > 0 AND (?1 IS NULL OR project_id = ?1)
GROUP BY id ORDER BY id
"""


class CallStore:
    """Thread-safe store of call halves keyed by ``(project_id, id)``.

    Starts and ends are kept as the JSON the client sent and merge whichever arrives first.
    ``db_path`` is a file path or ``":memory:"``.
    """

    def __init__(self, db_path: str = ":memory:") -> None:
        # One connection shared by the server's handler threads: a ":memory:" database exists
        # only inside its connection. The lock serialises its use.
        self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        # Readers may outlive the HTTP server (asserting after ``with``), so the connection
        # lives as long as the store and is closed, not leaked, when the store is collected.
        weakref.finalize(self, self._conn.close)
        with self._lock:
            self._conn.execute(_SCHEMA)
            for statement in _OBJECT_SCHEMA:
                self._conn.execute(statement)
            row = self._conn.execute(
                "SELECT MAX(COALESCE(MAX(start_seq), 0), COALESCE(MAX(end_seq), 0)) FROM calls"
            ).fetchone()
        # Positions continue after those of an existing database file.
        self._last_seq: int = row[0]

    def put_start(self, project_id: str, id: str, start: dict[str, Any]) -> None:
        self._put(project_id, id, (_UPSERT_START, start))

    def put_end(self, project_id: str, id: str, end: dict[str, Any]) -> None:
        self._put(project_id, id, (_UPSERT_END, end))

    def put_end_of_started(self, project_id: str, id: str, end: dict[str, Any]) -> bool:
        """Store the end of a call whose start is stored, as the v2 end route does.

        False, storing nothing, when there is no start. The check and the write happen under
        one lock, so a start stored meanwhile is either seen or not, never half.
        """
        end_json = json.dumps(end)
        with self._lock:
            started = self._conn.execute(
                "SELECT 1 FROM calls WHERE project_id = ? AND id = ? AND start_json IS NOT NULL",
                (project_id, id),
            ).fetchone()
            if started is None:
                return False
            self._write(project_id, id, _UPSERT_END, end_json)
        return True

    def put_complete(self, project_id: str, id: str, call: dict[str, Any]) -> None:
        """Store a whole call as the start and the end a v1 client would have sent.

        Both halves are written under one lock, so no reader sees the call without its end.
        """
        start = {key: value for key, value in call.items() if key not in END_ONLY_FIELDS}
        end = {"project_id": call["project_id"], "id": call["id"]} | {
            key: value for key, value in call.items() if key in END_ONLY_FIELDS
        }
        self._put(project_id, id, (_UPSERT_START, start), (_UPSERT_END, end))

    def calls(
        self, project_id: str | None = None, op_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Merged calls that have a start, in start order.

        Each holds every start field (absent ones as ``None``) and the end fields (``None``,
        and ``summary`` ``{}``, until the end arrives). ``op_name`` keeps the calls of that
        op name or ref only; a ref ending in ``:*`` (``weave:///e/p/op/name:*``, as Weave's
        op filter writes it) those of any version of the op.
        """
        rows = self._select(
            "SELECT start_json, end_json FROM calls"
            " WHERE start_json IS NOT NULL AND (?1 IS NULL OR project_id = ?1)"
            " ORDER BY start_seq",
            project_id,
        )
        calls = [
            _merge(json.loads(start), None if end is None else json.loads(end))
            for start, end in rows
        ]
        if op_name is None:
            return calls
        return [call for call in calls if _op_matches(call.get("op_name"), op_name)]

    def threads(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """The threads of :meth:`calls`, as :func:`threads_of` lists them."""
        return threads_of(self.calls(project_id))

    def put_file(self, project_id: str, digest: str, name: str, content: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?)",
                (project_id, digest, name, content),
            )

    def files(self, project_id: str | None = None) -> list[dict[str, Any]]:
        rows = self._select(
            "SELECT project_id, digest, name, content FROM files"
            " WHERE ?1 IS NULL OR project_id = ?1 ORDER BY rowid",
            project_id,
        )
        keys = ("project_id", "digest", "name", "content")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def put_obj(
        self, project_id: str, object_id: str, val: Any, *, digest: str, kind: str, created_at: str
    ) -> None:
        """Store a version of an object; ``ObjectTypeCollisionError`` if the name holds
        another kind of object (one name, one type, as the service enforces)."""
        val_json = json.dumps(val)
        with self._lock:
            kinds = {
                row[0]
                for row in self._conn.execute(
                    "SELECT kind FROM objs WHERE project_id = ? AND object_id = ?",
                    (project_id, object_id),
                )
            }
            if kinds - {kind}:
                raise ObjectTypeCollisionError(object_id, kind, sorted(kinds - {kind}))
            self._conn.execute(
                "INSERT OR IGNORE INTO objs SELECT ?, ?, ?, ?, ?,"
                " (SELECT COUNT(*) FROM objs WHERE project_id = ? AND object_id = ?), ?",
                (project_id, object_id, digest, kind, val_json, project_id, object_id, created_at),
            )

    def objs(
        self,
        project_id: str | None = None,
        *,
        object_ids: list[str] | None = None,
        kind: str | None = None,
        latest_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Object versions, oldest first, as ``/objs/query`` answers them (``val`` included)."""
        rows = self._select(
            "SELECT project_id, object_id, digest, kind, val_json, version_index, created_at,"
            " version_index = (SELECT MAX(version_index) FROM objs AS newer"
            "   WHERE newer.project_id = objs.project_id AND newer.object_id = objs.object_id)"
            " FROM objs WHERE ?1 IS NULL OR project_id = ?1 ORDER BY rowid",
            project_id,
        )
        found = []
        for project, object_id, digest, obj_kind, val_json, index, created_at, latest in rows:
            if object_ids is not None and object_id not in object_ids:
                continue
            if (kind is not None and obj_kind != kind) or (latest_only and not latest):
                continue
            found.append(
                {
                    "project_id": project,
                    "object_id": object_id,
                    "created_at": created_at,
                    "deleted_at": None,
                    "digest": digest,
                    "version_index": index,
                    "is_latest": int(latest),
                    "kind": obj_kind,
                    "base_object_class": None,
                    "leaf_object_class": None,
                    "val": json.loads(val_json),
                    "wb_user_id": None,
                }
            )
        return found

    def orphan_ends(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Ends whose start never arrived, as sent, in arrival order (Weave hides these)."""
        rows = self._select(
            "SELECT end_json FROM calls"
            " WHERE start_json IS NULL AND (?1 IS NULL OR project_id = ?1)"
            " ORDER BY end_seq",
            project_id,
        )
        return [json.loads(end) for (end,) in rows]

    def start_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call's start was written (ids never started are absent)."""
        return self._write_counts("start", project_id)

    def end_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call's end was written (ids never ended are absent)."""
        return self._write_counts("end", project_id)

    def _write_counts(
        self, half: Literal["start", "end"], project_id: str | None
    ) -> dict[str, int]:
        rows = self._select(_WRITE_COUNTS.format(half=half), project_id)
        return dict(rows)

    def _put(self, project_id: str, id: str, *halves: tuple[str, dict[str, Any]]) -> None:
        encoded = [(statement, json.dumps(half)) for statement, half in halves]
        with self._lock:
            for statement, half_json in encoded:
                self._write(project_id, id, statement, half_json)

    def _write(self, project_id: str, id: str, statement: str, half_json: str) -> None:
        # Callers hold the lock: positions must be handed out in the order halves are written.
        self._last_seq += 1
        self._conn.execute(statement, (project_id, id, half_json, self._last_seq))

    def _select(self, query: str, project_id: str | None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(query, (project_id,)).fetchall()


def _merge(start: dict[str, Any], end: dict[str, Any] | None) -> dict[str, Any]:
    call: dict[str, Any] = dict.fromkeys(_START_FIELDS) | start
    ended = end or {}
    call.update({field: ended.get(field) for field in END_ONLY_FIELDS})
    call["summary"] = ended.get("summary", {})
    return call


class ObjectTypeCollisionError(ValueError):
    """An object created under a name that holds objects of another kind."""

    def __init__(self, object_id: str, kind: str, existing: list[str]) -> None:
        # The service's wording (weave.trace_server.errors.ObjectNameTypeCollision).
        super().__init__(
            f"Cannot publish {object_id!r} as {kind}: that name is already used by "
            f"{' or '.join(existing)} in this project. Object versions cannot share types, "
            "publish this object under a different name."
        )


def _op_matches(call_op_name: object, wanted: str) -> bool:
    if not isinstance(call_op_name, str):
        return False
    if wanted.endswith(":*"):
        return call_op_name.startswith(wanted[:-1])
    return call_op_name == wanted


def call_status(call: dict[str, Any]) -> str:
    """The status Weave's UI shows for a merged call (WEAVE_WIRE §7 "Status")."""
    if call.get("exception") is not None:
        return "error"
    if ((call.get("summary") or {}).get("status_counts") or {}).get("error", 0) > 0:
        return "descendant_error"
    return "success" if call.get("ended_at") is not None else "running"


def threads_of(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Threads as Weave's Threads view lists them: only through their turn calls (``turn_id``
    equal to the call's own ``id``), in order of their first turn.

    Each: ``thread_id``, ``turn_count``, ``first_turn_id`` / ``last_turn_id``, the first turn's
    ``inputs`` (First Input), the last turn's ``output`` (Last Output) and its status.
    """
    turns: dict[str, list[dict[str, Any]]] = {}
    for call in sorted(calls, key=lambda call: call["started_at"]):
        if call.get("thread_id") is not None and call.get("turn_id") == call["id"]:
            turns.setdefault(call["thread_id"], []).append(call)
    return [
        {
            "thread_id": thread_id,
            "turn_count": len(thread_turns),
            "first_turn_id": thread_turns[0]["id"],
            "last_turn_id": thread_turns[-1]["id"],
            "first_input": thread_turns[0]["inputs"],
            "last_output": thread_turns[-1]["output"],
            "last_turn_status": call_status(thread_turns[-1]),
        }
        for thread_id, thread_turns in turns.items()
    ]
