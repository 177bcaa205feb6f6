"""Virtual environments of their own for tests whose packages would clash with the package's.

Each environment is one requirements file, ``tests/envs/<name>.txt`` (pinned versions), plus
this package installed from the work tree. It is built once under ``.venvs/`` and reused
while the file and the package's ``pyproject.toml`` stay the same: the directory's name holds
a hash of both. ``uv`` builds it when installed (seconds), plain ``venv`` and pip otherwise.

``python -m tests.venvs [NAME ...]`` builds the named environments (all of them by default),
two at a time; CI runs it beside the linters so pytest finds them built.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = Path(__file__).resolve().parent / "envs"
CACHE = Path(os.environ.get("TEST_VENVS_DIR", ROOT / ".venvs"))


class VenvBuildError(RuntimeError):
    """An environment could not be built; the message holds the installer's output."""


def names() -> list[str]:
    return sorted(path.stem for path in ENVS.glob("*.txt"))


def requirements(name: str) -> Path:
    path = ENVS / f"{name}.txt"
    if not path.is_file():
        raise VenvBuildError(f"no requirements file {path}")
    return path


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256()
    digest.update(requirements(name).read_bytes())
    digest.update((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:12]


def venv_python(name: str) -> Path:
    """The Python of environment ``name``, built first if it is not built yet.

    Safe to call from several processes at once: one builds, the others wait for it.
    """
    target = CACHE / f"{name}-{_fingerprint(name)}"
    python = target / "bin" / "python"
    done = target / ".built"
    if done.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _build(name, target)
            done.touch()
    return python


def _build(name: str, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    for stale in CACHE.glob(f"{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    beside = Path(sys.executable).parent / "uv"  # the [test] extra's, venv active or not
    uv = str(beside) if beside.exists() else shutil.which("uv")
    python = target / "bin" / "python"
    if uv:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                "-r",
                str(requirements(name)),
                "-e",
                str(ROOT),
            ],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(requirements(name)),
                "-e",
                str(ROOT),
            ],
        ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise VenvBuildError(
                f"building the {name!r} test environment failed: {' '.join(step)}\n"
                f"{result.stdout}{result.stderr}"
            )


def main(argv: Sequence[str]) -> int:
    wanted = list(argv) or names()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(venv_python, name) for name in wanted}
    failed = 0
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            print(f"{name}: {future.result()}")
        else:
            failed += 1
            print(f"{name}: FAILED\n{error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
