"""The Node.js OTLP client of the gateway tests: ``vercel_ai_trace.mjs`` with the pinned npm
packages of ``package.json`` / ``package-lock.json`` (the OpenTelemetry JS SDK, its OTLP/HTTP
protobuf exporter and the Vercel AI SDK with its mock language model).

``npm ci`` installs them once into a directory beside the Python test environments
(``tests/venvs.py``'s cache: ``TEST_VENVS_DIR`` or ``.venvs/``), named by a hash of the lock
file, ``package.json`` and the Node version; the scripts are copied in on every use, so editing
one needs no reinstall. ``python -m tests.js`` builds it (CI runs it beside the linters).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.venvs import CACHE, VenvBuildError

HERE = Path(__file__).resolve().parent
_MANIFESTS = ("package.json", "package-lock.json")


def node_version() -> str:
    """``node --version``; a VenvBuildError when Node.js is not installed."""
    node = shutil.which("node")
    if node is None:
        raise VenvBuildError("the gateway's JS client needs Node.js (>= 20) on PATH: not found")
    return subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in _MANIFESTS:
        digest.update((HERE / name).read_bytes())
    digest.update(node_version().encode())
    return digest.hexdigest()[:12]


def client_dir() -> Path:
    """A directory holding the installed packages and the current scripts, built first if
    needed. Safe to call from several processes at once: one builds, the others wait."""
    target = CACHE / f"js-client-{_fingerprint()}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "js-client.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".built").exists():
            _build(target)
        for script in HERE.glob("*.mjs"):
            shutil.copyfile(script, target / script.name)
    return target


def _build(target: Path) -> None:
    for stale in CACHE.glob("js-client-*"):
        shutil.rmtree(stale, ignore_errors=True)
    target.mkdir(parents=True)
    for name in _MANIFESTS:
        shutil.copyfile(HERE / name, target / name)
    npm = shutil.which("npm")
    if npm is None:
        raise VenvBuildError("the gateway's JS client needs npm on PATH: not found")
    # --ignore-scripts: none of the pinned packages needs an install script to work.
    step = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(step, cwd=target, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise VenvBuildError(
            f"building the gateway's JS client failed: {' '.join(step)} (in {target})\n"
            f"{result.stdout}{result.stderr}"
        )
    (target / ".built").touch()


def main() -> int:
    try:
        print(f"js-client: {client_dir()}")
    except VenvBuildError as error:
        print(f"js-client: FAILED\n{error}", file=sys.stderr)
        return 1
    return 0
