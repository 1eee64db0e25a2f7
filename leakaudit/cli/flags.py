"""Parsing the compact flag syntaxes of ``leakaudit scan`` and ``validate`` into config
sections."""

from __future__ import annotations

from typing import Any

from leakaudit.config import GateRule
from leakaudit.errors import ConfigError
from leakaudit.gate import parse_rule


def parse_defense(text: str, target_error: float) -> dict[str, Any]:
    """``"gaussian:sigma=0.01"``, ``"dp:clip=1,sigma=0.5"``, ``"none"`` → the ``defense``
    config section, with the σ what-if's ``target_error``."""
    kind, _, rest = text.partition(":")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--defense: bad parameter {item!r}; expected KIND:NAME=NUMBER,... "
                "(e.g. gaussian:sigma=0.01)"
            ) from None
        if not sep:
            raise ConfigError(f"--defense: parameter {item!r} needs =VALUE")
    return {"kind": kind.strip(), "params": params, "target_error": target_error}


def parse_allow(text: str) -> dict[str, str]:
    """``"ID=reason"`` or ``"sha256:HEX=reason"`` (a sample's ``content_sha256``) → an
    allowlist entry (the reason is required)."""
    sample, sep, reason = text.partition("=")
    if not sep or not reason.strip():
        raise ConfigError(f"--allow {text!r}: expected SAMPLE_ID=REASON or sha256:HEX=REASON")
    if sample.startswith("sha256:"):
        return {"sha256": sample.removeprefix("sha256:"), "reason": reason}
    return {"id": sample, "reason": reason}


def parse_rule_flag(text: str, max_fraction: float) -> GateRule:
    """A ``--fail-on`` rule; errors name the flag."""
    try:
        return parse_rule(text, max_fraction)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"--fail-on {text!r}: {exc}") from None
