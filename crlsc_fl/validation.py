"""One way for every component to declare and validate its configuration.

A component (the training settings of a method, a FAISS index, the mentor, the fusion of
eq. 1-2, the stage-2 link, ...) declares its settings once, as a frozen dataclass decorated
with :func:`component`: field types and constraints (``Annotated[int, Field(ge=1)]``,
``Literal[...]``, ``Annotated[str, registered(...)]`` names, :func:`name_list`,
:func:`mixture`, :func:`in_range`) are the whole validation, checked by pydantic in strict
mode (an ``int`` is no ``float``'s stand-in except where a float is expected, a ``bool`` is
never an ``int``, a string is never parsed into a number). A scenario (``crlsc_fl.scenario.config.ScenarioConfig``) composes these classes, one per
TOML table; :func:`build_component` turns pydantic's errors into one :class:`ConfigError`
naming the key as written in the TOML file, the bad value and what is allowed.

Every scenario key says what it is where it is declared: ``Field(description=...)`` in its
``Annotated`` type. The comments of pyproject.toml's ``[tool.flwr.app.config]`` block and the
key table of ``README.md`` are generated from these descriptions (:func:`key_docs`), with
the allowed values read off the type (``Literal`` choices, numeric bounds, :func:`in_range`).

Fields marked ``Field(..., exclude=True)`` are set by code (a device's seed, a schedule's
length), not by the scenario: they are no scenario keys.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, cast, dataclass_transform, get_args, get_origin

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler, PlainSerializer, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

T = TypeVar("T")

# validate_default: defaults written as text (lists, mixtures) are parsed like user values
COMPONENT_CONFIG = ConfigDict(strict=True, extra="forbid", validate_default=True)


class ConfigError(ValueError):
    """A scenario key or value is invalid; the message says which and what is allowed."""


@dataclass_transform(frozen_default=True, field_specifiers=(Field, dataclasses.field))
def component(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, validated component config (a pydantic dataclass: positional
    and keyword construction, ``dataclasses.replace`` and ``fields`` work as usual; to a
    type checker, a frozen dataclass)."""
    return cast("type[T]", pydantic_dataclass(frozen=True, config=COMPONENT_CONFIG)(cls))


def scenario_fields(config_type: type) -> list[dataclasses.Field[Any]]:
    """The fields of a component that are scenario keys (those not marked ``exclude``)."""
    infos = getattr(config_type, "__pydantic_fields__", {})
    return [f for f in dataclasses.fields(config_type) if not (f.name in infos and infos[f.name].exclude)]


def base_view(config: Any, base: type[T], **changes: Any) -> T:
    """``config`` (an instance of a subclass of ``base``) as a plain ``base``: the settings a
    component needs from a scenario table that extends its config (e.g. the stage-2 table
    is the link's config plus the federation's own keys)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cast(type, base))}
    return base(**{**values, **changes})


def key_name(field_name: str) -> str:
    """A field's name as written in TOML: ``local_epochs`` -> ``local-epochs``."""
    return field_name.replace("_", "-")


def describe(err: ValidationError, table: str) -> str:
    """pydantic's errors as ``table.key=value: what is allowed`` lines."""
    lines = []
    for item in err.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = [key_name(str(part)) for part in item["loc"]]
        if loc:
            lines.append(f"{table}.{'.'.join(loc)}={item['input']!r}: {message}")
        elif message.startswith(f"{table}."):  # a check across keys that names its key itself
            lines.append(message)
        else:
            lines.append(f"{table}: {message}")
    return "; ".join(lines)


def build_component(config_type: type[T], values: Mapping[str, Any], table: str) -> T:
    """``config_type`` from TOML-style keys (``local-epochs``), or :class:`ConfigError`."""
    try:
        return config_type(**{name.replace("-", "_"): value for name, value in values.items()})
    except ValidationError as err:
        raise ConfigError(describe(err, table)) from None


def checked(value_type: Any, key: str) -> Callable[[Any], Any]:
    """A check of one value of ``value_type`` (e.g. an :func:`in_range` type) outside a
    component: returns the validated value or raises :class:`ConfigError` ``key=value: ...``."""
    adapter = TypeAdapter(value_type, config=COMPONENT_CONFIG)

    def check(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as err:
            message = err.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{key}={value!r}: {message}") from None

    return check


# -- the keys' documentation ---------------------------------------------------------------


class KeyDoc(NamedTuple):
    """One scenario key of a component: its TOML name, default, description and allowed values."""

    key: str
    default: Any
    description: str
    allowed: str


def allowed_values(config_type: type, name: str) -> str:
    """What field ``name`` allows, read off its type: ``Literal`` choices, numeric bounds
    (``Field(ge=...)``, :func:`in_range`), joined by "; "; "" when the type says nothing
    more than its kind."""
    info = config_type.__pydantic_fields__[name]  # type: ignore[attr-defined]
    parts = []
    if get_origin(info.annotation) is Literal:
        choices = [f"`{choice}`" for choice in get_args(info.annotation)]
        parts.append(" or ".join(choices) if len(choices) < 3 else f"{', '.join(choices[:-1])} or {choices[-1]}")
    for item in info.metadata:  # Field(ge=...) and the like: annotated_types.Ge(ge=1), ...
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if hasattr(item, attribute):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, AfterValidator) and isinstance(item.func, Interval):
            parts.append(f"in {item.func.text}")
    return "; ".join(parts)


def key_docs(config: Any) -> list[KeyDoc]:
    """The scenario keys of a component config instance (its values as defaults), each with the
    description of its field; a key without a description is an error (a test runs this)."""
    config_type = type(config)
    values = TypeAdapter(config_type).dump_python(config)
    docs = []
    for f in scenario_fields(config_type):
        description = config_type.__pydantic_fields__[f.name].description
        if not description:
            raise ConfigError(f"{config_type.__name__}.{f.name} has no Field(description=...)")
        docs.append(KeyDoc(key_name(f.name), values[f.name], description, allowed_values(config_type, f.name)))
    return docs


# -- constrained types ---------------------------------------------------------------------


class Interval:
    """The check of :func:`in_range`: a value in ``[low, high]`` (ends open as asked)."""

    def __init__(self, low: float, high: float, open_low: bool, open_high: bool) -> None:
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high
        left = "(" if open_low or low == -math.inf else "["
        right = ")" if open_high or high == math.inf else "]"
        self.text = f"{left}{low:g}, {high:g}{right}"

    def __call__(self, value: float) -> float:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        if not (above and below):  # NaN is neither
            raise ValueError(f"out of range {self.text}")
        return value


def in_range(low: float, high: float = math.inf, *, open_low: bool = False, open_high: bool = False) -> AfterValidator:
    """An ``int`` or ``float`` in an interval: ``Annotated[float, in_range(-20, 40)]``; a value
    outside it (NaN included) fails with ``out of range [-20, 40]``. Infinite ends are open."""
    return AfterValidator(Interval(low, high, open_low, open_high))


@dataclasses.dataclass(frozen=True)
class Steps:
    """Several pydantic metadata items (validators, a serializer) as one ``Annotated`` item,
    so that a constrained type reads ``Annotated[tuple[str, ...], name_list(...)]``: a type
    a type checker understands, with the checks beside it."""

    items: tuple[Any, ...]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return handler.generate_schema(Annotated[(source, *self.items)])


def _allowed(names: Callable[[], Iterable[str]]) -> Callable[[str], str]:
    def check(value: str) -> str:
        valid = list(names())
        if value not in valid:
            raise ValueError(f"{value!r} is not allowed; valid: {', '.join(valid)}")
        return value

    return check


def registered(names: Callable[[], Iterable[str]]) -> AfterValidator:
    """A ``str`` that must be one of ``names()`` (e.g. a registry's ``names``), looked up
    when validated so that names registered later count too:
    ``Annotated[str, registered(DATASETS.names)]``."""
    return AfterValidator(_allowed(names))


def split_commas(value: Any) -> Any:
    """``"a, b,c"`` -> ``("a", "b", "c")``; anything else is left to the type check."""
    if isinstance(value, str):
        return tuple(filter(None, (part.strip() for part in value.split(","))))
    return value


def name_list(names: Callable[[], Iterable[str]]) -> Steps:
    """A non-empty comma-separated list of allowed names, held as a tuple and written back
    as ``"a,b"`` to TOML and Flower's run config: ``Annotated[tuple[str, ...], name_list(...)]``."""

    def check(items: tuple[str, ...]) -> tuple[str, ...]:
        if not items:
            raise ValueError(f"empty; give a comma-separated list of {', '.join(names())}")
        for item in items:
            _allowed(names)(item)
        return items

    return Steps((BeforeValidator(split_commas), AfterValidator(check), PlainSerializer(",".join)))


MIXTURE_FORMAT = "'name:0.5,other:0.5'"


def parse_weights(text: str) -> dict[str, str]:
    """``"a:0.6, b"`` -> {"a": "0.6", "b": "1"} (names and weight texts, unchecked)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition(":")
        if name.strip() in pairs:
            raise ValueError(f"names {name.strip()!r} twice; give each once")
        pairs[name.strip()] = weight.strip() if sep else "1"
    return pairs


def check_weights(weights: Mapping[str, float], names: Iterable[str]) -> None:
    """Weights of allowed names, each > 0, summing to 1."""
    valid = list(names)
    for name in weights:
        if name not in valid:
            raise ValueError(f"{name!r} is not allowed; valid: {', '.join(valid)}")
    if not weights:
        raise ValueError(f"empty; format {MIXTURE_FORMAT} with names from {', '.join(valid)}")
    if any(w <= 0 for w in weights.values()) or abs(sum(weights.values()) - 1.0) > 1e-6:
        raise ValueError("weights must be > 0 and sum to 1")


def number(text: str, what: str, fmt: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} is {text!r}, not a number (format {fmt})") from None


def mixture(names: Callable[[], Iterable[str]]) -> Steps:
    """``"a:0.6,b:0.4"`` -> {name: weight}, weights > 0 summing to 1; written back as text:
    ``Annotated[dict[str, float], mixture(...)]``."""

    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return {name: number(weight, f"weight of {name!r}", MIXTURE_FORMAT) for name, weight in parse_weights(value).items()}

    def check(weights: dict[str, float]) -> dict[str, float]:
        check_weights(weights, names())
        return weights

    def write(weights: dict[str, float]) -> str:
        return ",".join(f"{name}:{weight!r}" for name, weight in weights.items())

    return Steps((BeforeValidator(parse), AfterValidator(check), PlainSerializer(write)))
