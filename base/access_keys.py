"""Access keys of the service's clients: one key per client, each with scopes, stored hashed.

The keys file (``DataPaths.access_keys``, mode 0600) holds, per client name, the SHA-256 of its key
and its scopes; a key itself is shown once, when ``persona keys add`` or ``rotate`` makes it, and is
never written anywhere. Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them
(there is nothing to brute-force) and a key is found by its hash in one dictionary look-up.

A running service re-reads the file when it changes (its size, inode or modification time), so a
key added, rotated or revoked takes effect on the next request, without a restart.

Scopes: ``events`` (POST /events), ``persona`` (POST /persona when it needs a key), ``admin``
(everything), ``viewer`` (reports, the studio's read side), ``editor`` (the studio's edits;
implies ``viewer``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from base.durable import replace_durably

SCOPES = ("events", "persona", "admin", "viewer", "editor")
IMPLIES: dict[str, frozenset[str]] = {"admin": frozenset(SCOPES), "editor": frozenset({"editor", "viewer"})}
ENV_CLIENT = "env-key"
"""The client name of the single key from the environment (``serving.api_key_env``): an admin key."""
KEY_PREFIX = "pk_"
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class AccessKeyError(ValueError):
    """A keys file or a key command that cannot be honoured (names the file, client or scope)."""


def key_hash(token: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def granted(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope these scopes give (``admin`` gives all, ``editor`` gives ``viewer``)."""
    out: set[str] = set()
    for s in scopes:
        out |= IMPLIES.get(s, frozenset({s}))
    return frozenset(out)


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, checked against :data:`SCOPES` (raises naming the unknown one)."""
    out = list(dict.fromkeys(scopes))
    if not out:
        raise AccessKeyError(f"give at least one scope (one of {', '.join(SCOPES)})")
    for s in out:
        if s not in SCOPES:
            raise AccessKeyError(f"unknown scope {s!r}: use one of {', '.join(SCOPES)}")
    return out


@dataclass(frozen=True)
class Client:
    """One client as listed (never its key)."""

    name: str
    scopes: tuple[str, ...]
    created: str
    rotated: str | None


def _read(path: Path) -> dict[str, Any]:
    """The file's clients (empty when there is no file)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AccessKeyError(f"{path}: unreadable keys file: {e}") from e
    clients = raw.get("clients") if isinstance(raw, dict) else None
    if not isinstance(clients, dict):
        raise AccessKeyError(f"{path}: a keys file needs a 'clients' object")
    for name, c in clients.items():
        if not (isinstance(c, dict) and isinstance(c.get("hash"), str) and isinstance(c.get("scopes"), list)):
            raise AccessKeyError(f"{path}: client {name!r} needs 'hash' and 'scopes'")
        try:
            check_scopes(c["scopes"])
        except AccessKeyError as e:
            raise AccessKeyError(f"{path}: client {name!r}: {e}") from e
    return clients


def _write(path: Path, clients: dict[str, Any]) -> None:
    """Replace the file atomically, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "clients": clients}, fh, indent=1, sort_keys=True)
    replace_durably(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The file's clients under an exclusive lock; what the block leaves in the dict is written back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        clients = _read(path)
        before = json.dumps(clients, sort_keys=True)
        yield clients
        if json.dumps(clients, sort_keys=True) != before:
            _write(path, clients)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS or name == ENV_CLIENT:
        raise AccessKeyError(f"invalid client name {name!r}: 1-64 letters, digits, '-', '_' or '.' "
                             f"(and not {ENV_CLIENT!r})")
    return name


def add_client(path: Path, name: str, scopes: Iterable[str]) -> str:
    """Give a new client a key with these scopes; returns the key (shown once, never stored)."""
    scopes = check_scopes(scopes)
    with _locked(path) as clients:
        if _check_name(name) in clients:
            raise AccessKeyError(f"client {name!r} already has a key: use `persona keys rotate {name}`")
        token = new_key()
        clients[name] = {"hash": key_hash(token), "scopes": scopes, "created": _now(), "rotated": None}
    return token


def rotate_client(path: Path, name: str) -> str:
    """Replace a client's key (the old one stops working at once); returns the new key."""
    with _locked(path) as clients:
        if name not in clients:
            raise AccessKeyError(f"no client named {name!r} in {path}")
        token = new_key()
        clients[name] = clients[name] | {"hash": key_hash(token), "rotated": _now()}
    return token


def revoke_client(path: Path, name: str) -> None:
    """Remove a client and its key."""
    with _locked(path) as clients:
        if clients.pop(name, None) is None:
            raise AccessKeyError(f"no client named {name!r} in {path}")


def list_clients(path: Path) -> list[Client]:
    """The clients, by name (without keys)."""
    return [Client(n, tuple(c["scopes"]), c.get("created", ""), c.get("rotated"))
            for n, c in sorted(_read(path).items())]


class AccessKeys:
    """Checks presented keys against the keys file (re-read when it changes); thread-safe."""

    def __init__(self, path: Path, admin_key: str | None = None) -> None:
        self.path = path
        self._env = {key_hash(admin_key): (ENV_CLIENT, granted(["admin"]))} if admin_key else {}
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, tuple[str, frozenset[str]]] = dict(self._env)
        self._lock = threading.Lock()
        self._refresh()

    @classmethod
    def load(cls, path: Path, admin_key: str | None = None) -> "AccessKeys":
        """The keys of ``path``; ``admin_key`` (the single key of older set-ups) is an admin key too."""
        return cls(path, admin_key)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            clients = _read(self.path) if stamp is not None else {}
            table = {c["hash"]: (n, granted(c["scopes"])) for n, c in clients.items()}
            self._by_hash, self._stamp = dict(self._env) | table, stamp

    @property
    def configured(self) -> bool:
        """True when at least one key exists (in the file or the environment)."""
        self._refresh()
        return bool(self._by_hash)

    def check(self, token: str | None, scope: str) -> str | None:
        """The client name if ``token`` is a key holding ``scope``, else None."""
        if scope not in SCOPES:
            raise AccessKeyError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
        if not token:
            return None
        self._refresh()
        found = self._by_hash.get(key_hash(token))
        if found is None or scope not in found[1]:
            return None
        return found[0]

    def holder(self, token: str | None) -> tuple[str, frozenset[str]] | None:
        """The client and its scopes for this token, or None (to tell "wrong key" from "wrong scope")."""
        if not token:
            return None
        self._refresh()
        return self._by_hash.get(key_hash(token))


def write_secret(path: Path, text: str) -> Path:
    """Write a secret (a generated key) to a file only its owner can read; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return replace_durably(tmp, path)
