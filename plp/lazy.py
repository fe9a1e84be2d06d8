"""Modules loaded on first use, so what only a few requests need stays out of every
process's memory until one of them comes.

py_webauthn (with cryptography and cbor2 under it) adds about 15 MiB to a process; only
passkey ceremonies use it. `lazy_module` returns a module object at once and runs the
module's code on its first attribute access (importlib's LazyLoader). A module that is
already loaded is returned as is.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module `name` (absolute), executed when one of its attributes is first read."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
