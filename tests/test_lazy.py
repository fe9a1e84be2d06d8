"""plp/lazy.py: a module loaded on first use, and what a started server keeps out of memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from plp.lazy import lazy_module


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway importable module that records, in a list, each time its code runs."""
    name = f"lazy_probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import builtins
            builtins.LAZY_RUNS.append(__name__)
            VALUE = 42
            """
        )
    )
    runs: list[str] = []
    monkeypatch.setattr("builtins.LAZY_RUNS", runs, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, runs
    sys.modules.pop(name, None)


def test_code_runs_on_first_attribute_read_only(package):
    name, runs = package
    module = lazy_module(name)
    assert runs == []
    assert module.VALUE == 42
    assert module.VALUE == 42
    assert runs == [name]


def test_a_loaded_module_is_returned_as_is(package):
    name, runs = package
    first = lazy_module(name)
    assert first.VALUE == 42
    assert lazy_module(name) is sys.modules[name]
    assert runs == [name]


def test_an_unknown_module_is_refused_at_once():
    with pytest.raises(ModuleNotFoundError):
        lazy_module(f"no_such_module_{uuid.uuid4().hex}")


def test_the_application_starts_without_the_passkey_and_crypto_libraries():
    # Start RSS (issue 15: ≤ 40 MiB) depends on this: every route module is imported by
    # make_app, and none of them may pull py_webauthn, cryptography or segno in.
    code = textwrap.dedent(
        """
        import sys
        from plp import app
        from plp.handlers import (
            auth, mfa_pages, pages, passkey_pages, passkeys, reauth_page, totp,
        )
        heavy = [m for m in ("webauthn", "cryptography", "segno", "cbor2") if m in sys.modules]
        print(",".join(heavy))
        passkeys.webauthn_rp.CHALLENGE_TTL
        print("webauthn" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["", "True"]
