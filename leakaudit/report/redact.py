"""``--redact``: reports without file names or directories.

Sample ids (ImageFolder file paths can be personal data) become stable salted hashes,
``h:`` + the first 16 hex digits of HMAC-SHA256(key, id); class names are hashed the
same way, and paths keep only their file name. The key is

* ``$LEAKAUDIT_REDACT_KEY`` when set (a CI secret keeps ids stable across runners), else
* the file ``$XDG_CACHE_HOME/leakaudit/redact-salt`` (``~/.cache/leakaudit/…``), 32 random
  bytes created on first use, readable by the user only.

The hash → id mapping is merged into ``redact-map.json`` beside the salt file, never into
the report. The same key gives the same ids in every run, so baselines and allowlists
keep working; an allowlist may name the original id or its hash. Samples'
``content_sha256`` are keyed too (:meth:`Redactor.content`): allowlist ``sha256``
entries and baselines of a redacted scan use the redacted values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from leakaudit.config import ScanConfig, config_from_dict, config_to_dict
from leakaudit.errors import InputError
from leakaudit.report.document import Report
from leakaudit.report.files import write_atomic
from leakaudit.report.paths import convert_paths

KEY_ENV = "LEAKAUDIT_REDACT_KEY"
_HASHED = re.compile(r"h:[0-9a-f]{16}")


def redact_dir() -> Path:
    """``$XDG_CACHE_HOME/leakaudit`` (default ``~/.cache/leakaudit``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "leakaudit"


def redact_key() -> bytes:
    """The HMAC key: ``$LEAKAUDIT_REDACT_KEY``, else the local salt file (created once)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = redact_dir() / "redact-salt"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        key = path.read_text().strip()
    except OSError as exc:
        raise InputError(f"--redact: cannot use the salt file {path}: {exc}") from None
    if not key:
        raise InputError(f"--redact: the salt file {path} is empty; delete it")
    return key.encode()


class Redactor:
    """Hashes ids with one key and remembers hash → original id."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.mapping: dict[str, str] = {}

    def id(self, value: str) -> str:
        """``h:<16 hex>``; an id that is already such a hash is kept."""
        if _HASHED.fullmatch(value):
            return value
        digest = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:16]
        hashed = f"h:{digest}"
        self.mapping[hashed] = value
        return hashed

    def content(self, digest: str) -> str:
        """A sample's content hash (hex) keyed like the ids: HMAC-SHA256, 64 hex digits, so
        that a redacted report cannot confirm that a known image was scanned."""
        return hmac.new(self.key, b"content|" + digest.encode(), hashlib.sha256).hexdigest()

    def config(self, config: ScanConfig) -> ScanConfig:
        """``config`` with its allowlist ids hashed (the gate then matches hashed ids)."""
        raw = config_to_dict(config)
        for entry in raw["gate"]["allowlist"]:
            if entry["id"] is not None:
                entry["id"] = self.id(entry["id"])
        return config_from_dict(raw)

    def paths(self, report: Report) -> None:
        """Reduce the report's paths to file names and hash its class names."""
        convert_paths(report, lambda p: p if p is None or p == "-" else Path(p).name)
        if isinstance(report.dataset.get("classes"), list):
            report.dataset["classes"] = [self.id(str(c)) for c in report.dataset["classes"]]
        report.paths = {"base": None, "base_from": "cwd", "redacted": True}

    def save(self) -> Path:
        """Merge the mapping into ``redact-map.json`` (mode 0600); returns its path."""
        path = redact_dir() / "redact-map.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            known: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            known.update(self.mapping)
            write_atomic(path, json.dumps(known, indent=1, sort_keys=True) + "\n")
            path.chmod(0o600)
        except (OSError, ValueError) as exc:
            raise InputError(f"--redact: cannot write the id map {path}: {exc}") from None
        return path
