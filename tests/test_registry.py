"""The one registry shape: lookups, did-you-mean, listing, ordered selection."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from leakaudit.registry import Registry, UnknownNameError, closest, unknown_message


@pytest.fixture
def colours() -> Registry[int]:
    return Registry("colour", [("red", 1), ("green", 2), ("blue", 3)])


def test_lookup_listing_and_order(colours: Registry[int]) -> None:
    assert colours["green"] == 2
    assert "blue" in colours and "cyan" not in colours and 3 not in colours
    assert colours.names() == ("red", "green", "blue")
    assert list(colours) == ["red", "green", "blue"] and len(colours) == 3
    assert colours.items() == (("red", 1), ("green", 2), ("blue", 3))
    assert colours.get("cyan") is None and colours.get("red") == 1
    assert colours.help_text() == "red, green, blue"
    assert colours.help_text(lambda v: f"#{v}") == "red (#1), green (#2), blue (#3)"


def test_unknown_name_suggests_the_closest(colours: Registry[int]) -> None:
    with pytest.raises(UnknownNameError, match=r"^unknown colour 'gren' \(did you mean green\?\)$"):
        colours["gren"]
    with pytest.raises(ValueError) as info:  # an UnknownNameError is a ValueError
        colours["purple"]
    assert str(info.value) == "unknown colour 'purple'; choose from: red, green, blue"
    assert isinstance(info.value, UnknownNameError)
    assert (info.value.kind, info.value.name) == ("colour", "purple")


def test_unhashable_name_is_unknown_not_a_type_error(colours: Registry[int]) -> None:
    with pytest.raises(UnknownNameError):
        colours[["red"]]  # type: ignore[index]


def test_duplicate_registration_is_refused(colours: Registry[int]) -> None:
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        colours.register("red", 9)
    assert colours["red"] == 1
    assert colours.register("cyan", 4) == 4 and colours.names()[-1] == "cyan"


def test_select_dedupes_in_registry_order(colours: Registry[int]) -> None:
    assert colours.select(["blue", "red", "blue"]) == ("red", "blue")
    assert colours.check("red") == "red"
    with pytest.raises(UnknownNameError, match="unknown colour 'bleu'"):
        colours.select(["red", "bleu"])
    with pytest.raises(ValueError, match="select at least one colour"):
        colours.select([])


def test_closest_and_message() -> None:
    assert closest("per_clas", ["per_class", "first"]) == "per_class"
    assert closest("zzz", ["per_class", "first"]) is None
    assert unknown_message("score", "i2g", ["i2f", "grad_norm"]) == (
        "unknown score 'i2g' (did you mean i2f?)"
    )


def test_one_did_you_mean_lookup_in_the_package() -> None:
    package = Path(__file__).resolve().parents[1] / "leakaudit"
    hits = subprocess.run(
        ["grep", "-rl", "get_close_matches", str(package), "--include=*.py"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert [Path(h).name for h in hits] == ["registry.py"]
