"""The memory-store snapshot that carries sessions across a graceful restart (SPEC §11).

File `<data-dir>/sessions.snapshot`, mode 0600, two lines:

1. a JSON header: `format`, `version`, `secret` (a fingerprint of the signing secret:
   HMAC-SHA256 of a fixed label under it, never the secret itself) and `mac` (HMAC-SHA256
   of line 2 under a second key derived from the secret);
2. a JSON body: `writtenAt` and `sessions`, the store's records (hashed keys only).

It is written atomically (temp file, fsync, rename, fsync of the directory) at shutdown and
read once at start. Anything wrong with it (missing, unreadable, truncated, corrupt, another
version, or written under a secret that is neither `SESSION_SECRET` nor one of
`SESSION_SECRET_PREVIOUS`) is logged as one line and ignored: the server starts with no
sessions, which only means people sign in again. Cookies signed with an unknown secret
could not be verified anyway, so restoring their sessions would only waste memory.

The file is deleted right after it is read. Otherwise a crash later in the process's life
(SIGKILL, OOM, power loss) would leave the start-time snapshot behind, and the next start
would bring back sessions that had been ended since (logout, revocation, password change,
disabled account). Losing sessions on a crash is the safe failure; reviving ended ones is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .sessions.base import SessionStore
from .sessions.memory import MemorySessionStore

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "sessions.snapshot"
SNAPSHOT_FORMAT = "plp-session-snapshot"
SNAPSHOT_VERSION = 1
# Fixed labels: the fingerprint and MAC keys are derived from the secret, never equal to it.
_ID_LABEL = b"plp session snapshot: secret id v1"
_MAC_LABEL = b"plp session snapshot: mac key v1"
# A snapshot bigger than this is not ours (a million sessions is about 300 MB).
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024


class SnapshotRejected(Exception):
    """The snapshot cannot be used; the message says why, for one log line."""


def snapshot_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the snapshot lives for a data dir."""
    return Path(data_dir) / SNAPSHOT_NAME


def secret_fingerprint(secret: str) -> str:
    """A public identifier for a signing secret: HMAC of a fixed label under it."""
    return hmac.new(secret.encode(), _ID_LABEL, hashlib.sha256).hexdigest()


def _mac(secret: str, body: bytes) -> str:
    key = hmac.new(secret.encode(), _MAC_LABEL, hashlib.sha256).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def encode_snapshot(records: list[dict[str, Any]], secret: str, *, now: float) -> bytes:
    """The file contents for store records under `secret`."""
    body = json.dumps({"writtenAt": now, "sessions": records}, separators=(",", ":")).encode()
    header = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "secret": secret_fingerprint(secret),
        "mac": _mac(secret, body),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body + b"\n"


def decode_snapshot(data: bytes, secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records in a snapshot written under one of `secrets`, or SnapshotRejected."""
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise SnapshotRejected("it is truncated or not a snapshot (no header line)")
    try:
        header = json.loads(head)
    except ValueError:
        raise SnapshotRejected("its header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotRejected("it is not a plp session snapshot")
    if header.get("version") != SNAPSHOT_VERSION:
        raise SnapshotRejected(
            f"it has format version {header.get('version')!r}; this plp reads {SNAPSHOT_VERSION}"
        )
    fingerprint = header.get("secret")
    secret = next(
        (s for s in secrets if hmac.compare_digest(secret_fingerprint(s), str(fingerprint))), None
    )
    if secret is None:
        raise SnapshotRejected(
            "it was written under a different SESSION_SECRET (not the current one, nor in "
            "SESSION_SECRET_PREVIOUS); its cookies could not be verified"
        )
    body = body.removesuffix(b"\n")
    if not hmac.compare_digest(_mac(secret, body), str(header.get("mac"))):
        raise SnapshotRejected("its contents are truncated or altered (MAC mismatch)")
    try:
        payload = json.loads(body)
        records = payload["sessions"]
    except (ValueError, KeyError, TypeError):
        raise SnapshotRejected("its body is not valid JSON") from None
    if not isinstance(records, list):
        raise SnapshotRejected("its session list is malformed")
    return [r for r in records if isinstance(r, dict)]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(path: Path, contents: bytes) -> None:
    """Replace `path` atomically with `contents`, mode 0600, durable before it returns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL after unlinking: never write through a symlink or a file someone else opened.
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(contents)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # in case the umask narrowed nothing but a filesystem widened it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _discard(path: Path) -> None:
    try:
        path.unlink()
        _fsync_dir(path.parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not delete the session snapshot %s: %s", path, exc.strerror)


def restore_sessions(store: SessionStore, path: Path, secrets: tuple[str, ...]) -> int:
    """Load the snapshot at `path` into a memory store, then delete it; never raises.

    Returns how many sessions were restored (expired ones are dropped by the store).
    """
    if not isinstance(store, MemorySessionStore):
        return 0
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except FileNotFoundError:
        log.info(
            "no saved sessions to restore (normal on a first start; no session snapshot at %s)",
            path,
        )
        return 0
    except OSError as exc:
        log.warning("session snapshot %s ignored: cannot read it: %s", path, exc.strerror)
        return 0
    try:
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise SnapshotRejected("it is too large")
        records = decode_snapshot(data, secrets)
    except SnapshotRejected as exc:
        log.warning("session snapshot %s ignored: %s; users sign in again", path, exc)
        _discard(path)
        return 0
    loaded = store.restore(records)
    _discard(path)
    log.info(
        "restored %d of %d sessions from %s (expired or malformed ones dropped)",
        loaded,
        len(records),
        path,
    )
    return loaded


def save_sessions(store: SessionStore, path: Path, secret: str) -> int:
    """Write a memory store's live sessions to `path`; returns how many; never raises."""
    if not isinstance(store, MemorySessionStore):
        return 0
    records = store.snapshot()
    try:
        write_snapshot(path, encode_snapshot(records, secret, now=time.time()))
    except OSError as exc:
        # A full disk (ENOSPC) or a file-size limit (EFBIG) lands here: one line, no traceback.
        log.error(
            "could not write the session snapshot %s: %s; users sign in again after the restart",
            path,
            exc.strerror or exc,
        )
        return 0
    log.info("saved %d sessions to %s", len(records), path)
    return len(records)
