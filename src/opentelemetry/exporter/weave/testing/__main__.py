"""Run the local Weave receiver until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from opentelemetry.exporter.weave.testing import LocalWeaveServer


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m opentelemetry.exporter.weave.testing",
        description="Serve a local, Weave-compatible trace receiver.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on")
    parser.add_argument(
        "--db", default=":memory:", help="SQLite file to keep calls in (default: in memory)"
    )
    # The key comes from the environment because a command line is visible to other users.
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require the API key held in environment variable VAR",
    )
    parser.add_argument(
        "--calls-complete-only",
        action="store_true",
        help="act as a new 'calls_complete' project: refuse the v1 write routes with 400",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="answer 413 to a request body larger than N bytes (default: no limit)",
    )
    args = parser.parse_args(argv)
    api_key: str | None = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"environment variable {args.api_key_env} is unset or empty")

    try:
        server = LocalWeaveServer(
            args.host,
            args.port,
            api_key=api_key,
            db_path=args.db,
            calls_complete_only=args.calls_complete_only,
            max_body_bytes=args.max_body_bytes,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        server.start()
    except OSError as exc:
        address = f"[{args.host}]" if ":" in args.host else args.host
        parser.exit(1, f"cannot listen on {address}:{args.port}: {exc}\n")
    signal.signal(signal.SIGTERM, _interrupt)
    notes = ["API key required" if api_key is not None else "no auth"]
    if args.calls_complete_only:
        notes.append("calls_complete only")
    if args.max_body_bytes is not None:
        notes.append(f"bodies up to {args.max_body_bytes} bytes")
    print(f"Local Weave receiver on {server.url} ({', '.join(notes)}); Ctrl-C to stop", flush=True)
    try:
        while True:
            # time.sleep wakes for signals on every platform; Event.wait() does not on Windows.
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
