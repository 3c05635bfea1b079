"""The component system's own pieces: ranges, single-value checks, grouped metadata, messages."""

from __future__ import annotations

import math
from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter

from crlsc_fl.validation import ConfigError, build_component, checked, component, in_range, mixture, name_list, registered

NAMES = ("a", "b", "c")


@component
class _Example:
    name: Annotated[str, registered(lambda: NAMES), Field(description="a name")] = "a"
    names: Annotated[tuple[str, ...], name_list(lambda: NAMES), Field(description="names")] = ("a", "b")
    weights: Annotated[dict[str, float], mixture(lambda: NAMES), Field(description="a mixture")] = Field(
        default_factory=lambda: {"a": 1.0}
    )
    snr: Annotated[float, in_range(-20, 40), Field(description="an SNR")] = 0.0

    def __post_init__(self) -> None:
        if self.name == "c" and "c" not in self.names:
            raise ValueError(f"example.name={self.name!r} needs 'c' in example.names")


@pytest.mark.parametrize(
    "interval, inside, outside, text",
    [
        ({"low": -20, "high": 40}, [-20, 0, 40.0], [-20.5, 41, math.nan], "[-20, 40]"),
        ({"low": 1}, [1, 10**9], [0, -1], "[1, inf)"),
        ({"low": 0, "open_low": True}, [1e-9], [0.0, -1.0], "(0, inf)"),
        ({"low": 0, "high": 1, "open_low": True}, [0.5, 1], [0, 1.5], "(0, 1]"),
        ({"low": 0, "high": 1, "open_high": True}, [0, 0.5], [1, -0.1], "[0, 1)"),
    ],
)
def test_in_range(interval: dict, inside: list, outside: list, text: str) -> None:
    check = checked(Annotated[float, in_range(**interval)], "x")
    assert [check(v) for v in inside] == inside
    for value in outside:
        with pytest.raises(ConfigError) as err:
            check(value)
        assert str(err.value) == f"x={value!r}: out of range {text}"


def test_checked_rejects_a_bool_as_a_number() -> None:
    with pytest.raises(ConfigError, match="x=True: Input should be a valid number"):
        checked(Annotated[float, in_range(0, 1)], "x")(True)


def test_grouped_metadata_parses_checks_and_writes_back() -> None:
    example = build_component(_Example, {"names": "c, a", "weights": "a:0.25,b:0.75"}, "example")
    assert example.names == ("c", "a") and example.weights == {"a": 0.25, "b": 0.75}
    assert TypeAdapter(_Example).dump_python(example) == {"name": "a", "names": "c,a", "weights": "a:0.25,b:0.75", "snr": 0.0}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"name": "d"}, "example.name='d': 'd' is not allowed; valid: a, b, c"),
        ({"names": "a,d"}, "example.names='a,d': 'd' is not allowed; valid: a, b, c"),
        ({"names": ""}, "example.names='': empty; give a comma-separated list of a, b, c"),
        ({"weights": "a:0.5"}, "example.weights='a:0.5': weights must be > 0 and sum to 1"),
        ({"snr": 50}, "example.snr=50: out of range [-20, 40]"),
        ({"snr": 50, "name": "d"}, "example.name='d': 'd' is not allowed; valid: a, b, c; example.snr=50: out of range [-20, 40]"),
        # a check across keys that names its keys is not prefixed again
        ({"name": "c"}, "example.name='c' needs 'c' in example.names"),
        ({"colour": 1}, "example.colour=1: Unexpected keyword argument"),
    ],
)
def test_errors_name_the_key_the_value_and_what_is_allowed(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_component(_Example, values, "example")
    assert str(err.value) == message
