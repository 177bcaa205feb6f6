"""The canned OpenAI-compatible server for tests: a re-export of ``examples/canned_openai.py``.

The examples run it too, and they must not import from ``tests/``; so the one copy lives in
``examples/`` and is loaded here by path (``examples/`` is no package).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parent.parent / "examples" / "canned_openai.py"
_MODULE_NAME = "_weave_examples_canned_openai"


def _load() -> ModuleType:
    module = sys.modules.get(_MODULE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, _PATH)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the canned OpenAI server from {_PATH}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        spec.loader.exec_module(module)
    return module


_canned = _load()

CannedOpenAI = _canned.CannedOpenAI
ERROR_MESSAGE: str = _canned.ERROR_MESSAGE
FAIL_TRIGGER: str = _canned.FAIL_TRIGGER
REPLY: str = _canned.REPLY
RESPONSE_MODEL: str = _canned.RESPONSE_MODEL
TOOL_ARGUMENT: str = _canned.TOOL_ARGUMENT
USAGE: dict[str, int] = _canned.USAGE

__all__ = [
    "ERROR_MESSAGE",
    "FAIL_TRIGGER",
    "REPLY",
    "RESPONSE_MODEL",
    "TOOL_ARGUMENT",
    "USAGE",
    "CannedOpenAI",
]
