"""Each route's request schema: the one source of the request checks and of the OpenAPI
description (:mod:`rnnkit.serve.openapi`, ``GET /openapi.json``).

The schemas are JSON Schema (the subset :func:`check` reads: ``type``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``minItems``/``maxItems``,
``minLength``/``pattern``, ``minimum``/``maximum``/``exclusiveMinimum``, ``anyOf``, and a
``oneOf`` of ``required`` lists), so a request is refused with the field that is wrong and
what was expected, and a client reads the same bounds in the description.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

SEED_LIMIT = 2**63 - 1


class RequestError(Exception):
    """A request the service refuses: its HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may ask (each the option that sets it): ``max_chars`` characters of
    text in all (``--max-chars``), ``max_items`` lines or sentences (``--max-items``),
    ``max_tokens`` generated tokens (``--max-tokens``), ``max_k`` next tokens (the vocabulary,
    at most 1000), and ``timeout`` seconds from its arrival to its answer (``--timeout``)."""

    max_chars: int = 65536
    max_items: int = 256
    max_tokens: int = 1000
    max_k: int = 1000
    timeout: float = 30.0

    @property
    def body_bytes(self) -> int:
        """The largest body read: ``max_chars`` characters each in JSON's widest escape
        (``\\uXXXX``), and room for the field names and punctuation."""
        return 6 * self.max_chars + 65536


# -- the routes' schemas ---------------------------------------------------------------------------


def _text(description: str, non_empty: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if non_empty:
        schema["minLength"] = 1
    return schema


def _sentences(limits: Limits, what: str) -> dict[str, Any]:
    word = {"type": "string", "minLength": 1}
    return {
        "type": "array",
        "description": f"the sentences to {what}: each a string (split on whitespace) or a list of words",
        "minItems": 1,
        "maxItems": limits.max_items,
        "x-option": "--max-items",
        "items": {
            "anyOf": [
                {"type": "string", "pattern": r"\S", "description": "a sentence, split on whitespace"},
                {"type": "array", "items": word, "minItems": 1, "description": "a sentence's words"},
            ]
        },
    }


def object_schema(
    properties: dict[str, Any], required: list[str] | None = None, **more: Any
) -> dict[str, Any]:
    """A JSON object of ``properties`` and no others."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema | more


def request_schemas(limits: Limits) -> dict[str, dict[str, Any]]:
    """Each POST route's request body, by path."""
    tokens = {"type": "integer", "minimum": 1}
    probability = {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1}
    return {
        "/v1/score": object_schema(
            {
                "lines": {
                    "type": "array",
                    "description": "lines to score, each on its own (no newline inside)",
                    "items": {"type": "string", "minLength": 1, "pattern": r"\A[^\n]*\Z"},
                    "minItems": 1,
                    "maxItems": limits.max_items,
                    "x-option": "--max-items",
                },
                "text": _text("a text whose lines are scored, each on its own"),
            },
            oneOf=[{"required": ["lines"]}, {"required": ["text"]}],
        ),
        "/v1/next": object_schema(
            {
                "text": _text("the text so far (empty: the start of a sentence)", non_empty=False),
                "k": tokens | {"maximum": limits.max_k, "default": 10, "description": "how many tokens"},
            },
            ["text"],
        ),
        "/v1/generate": object_schema(
            {
                "prompt": _text("the text to continue (empty: a new sentence)", False) | {"default": ""},
                "max_tokens": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": limits.max_tokens,
                    "x-option": "--max-tokens",
                    "default": None,
                    "description": "tokens to draw at most (null: 400 for characters, else 50)",
                },
                "temperature": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 100,
                    "default": 1.0,
                    "description": "softmax(logits / temperature)",
                },
                "top_k": tokens | {"type": ["integer", "null"], "default": None, "description": "top k"},
                "top_p": probability | {"default": None, "description": "nucleus sampling's mass"},
                "seed": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": SEED_LIMIT,
                    "default": None,
                    "description": "the same seed draws the same text",
                },
                "stop": {"type": "boolean", "default": True, "description": "stop where the text ends"},
            }
        ),
        "/v1/tag": object_schema({"sentences": _sentences(limits, "tag")}, ["sentences"]),
        "/v1/classify": object_schema({"sentences": _sentences(limits, "classify")}, ["sentences"]),
    }


# -- reading a request -----------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """The body as JSON (UTF-8), or a 400 naming where it stops being JSON."""

    def refuse_constant(name: str) -> Any:
        raise RequestError(400, f"the body is not JSON: {name} is not a JSON number")

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the body is not JSON: {err}") from None
    except (UnicodeDecodeError, ValueError) as err:  # bytes that are not UTF-8 (or -16, -32)
        raise RequestError(400, f"the body is not UTF-8 JSON: {err}") from None
    except RecursionError:
        raise RequestError(400, "the body is not JSON this service reads: nested too deep") from None


def text_chars(value: Any) -> int:
    """Characters of text in a parsed body: every string, keys included."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(len(k) + text_chars(v) for k, v in value.items())
    return 0


def read_request(body: bytes, schema: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The checked request in ``body``, every field given (defaults filled in), or a
    :class:`RequestError` naming what is wrong."""
    value = parse_json(body)
    if not isinstance(value, dict):
        raise RequestError(400, f"the body must be a JSON object, got {_got(value)}")
    chars = text_chars(value)
    if chars > limits.max_chars:
        raise RequestError(
            413, f"the request holds {chars} characters of text; at most {limits.max_chars} (--max-chars)"
        )
    checked: dict[str, Any] = check(value, schema, "")
    return checked


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_ARTICLES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "null": "null",
    "array": "an array",
    "object": "an object",
}


def _got(value: Any) -> str:
    kind = _json_type(value)
    if kind in ("array", "object", "null"):
        return _ARTICLES[kind]
    shown = json.dumps(value, ensure_ascii=True)
    article = "a boolean" if kind == "boolean" else _ARTICLES[kind]
    return f"{article} {shown[:40]}{'...' if len(shown) > 40 else ''}"


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _fits(value: Any, kind: str) -> bool:
    found = _json_type(value)
    return found == kind or (kind == "number" and found == "integer")


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check(value: Any, schema: dict[str, Any], where: str) -> Any:
    """``value`` checked against ``schema`` (at ``where``, for the messages), objects' missing
    fields filled in with their defaults."""
    name = where or "the body"
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            if any(_fits(value, kind) for kind in _types(option)):
                return check(value, option, where)
        expected = " or ".join(_describe(o) for o in schema["anyOf"])
        raise RequestError(422, f"{name}: expected {expected}, got {_got(value)}")
    kinds = _types(schema)
    if not any(_fits(value, kind) for kind in kinds):
        raise RequestError(422, f"{name}: expected {_describe(schema)}, got {_got(value)}")
    if isinstance(value, dict):
        return _checkobject_schema(value, schema, where)
    if isinstance(value, list):
        _bounds(name, len(value), schema.get("minItems"), schema.get("maxItems"), schema, "items")
        items = schema.get("items", {})
        return [check(v, items, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        return _check_string(value, schema, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, name)
    return value


def _checkobject_schema(value: dict[str, Any], schema: dict[str, Any], where: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    unknown = [k for k in value if k not in properties]
    if unknown and schema.get("additionalProperties") is False:
        takes = ", ".join(properties)
        field = _field(where, unknown[0])
        raise RequestError(422, f"{field}: unknown field; expected only {takes}")
    for key in schema.get("required", []):
        if key not in value:
            raise RequestError(422, f"{_field(where, key)}: missing; this field is required")
    if "oneOf" in schema:
        given = [r["required"] for r in schema["oneOf"] if all(k in value for k in r["required"])]
        if len(given) != 1:
            options = " or ".join("+".join(r["required"]) for r in schema["oneOf"])
            raise RequestError(422, f"{where or 'the body'}: give exactly one of {options}")
    out = {}
    for key, sub in properties.items():
        if key in value:
            out[key] = check(value[key], sub, _field(where, key))
        elif "default" in sub:
            out[key] = sub["default"]
    return out


def _check_string(value: str, schema: dict[str, Any], name: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(422, f"{name}: holds a lone surrogate; expected Unicode text") from None
    if len(value) < schema.get("minLength", 0):
        raise RequestError(422, f"{name}: empty; expected text")
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        why = "holds a newline; send text to score several lines" if "\\n" in pattern else "holds no word"
        raise RequestError(422, f"{name}: {why}")
    return value


def _check_number(value: float, schema: dict[str, Any], name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(422, f"{name}: expected a finite number, got {value}")
    low, high = schema.get("minimum"), schema.get("maximum")
    above = schema.get("exclusiveMinimum")
    if above is not None and not value > above:
        raise RequestError(422, f"{name}: expected a number above {above}, got {value}")
    _bounds(name, value, low, high, schema, "")


def _bounds(name: str, value: float, low: Any, high: Any, schema: dict[str, Any], unit: str) -> None:
    noun = f" {unit}" if unit else ""
    if low is not None and value < low:
        noun = noun.removesuffix("s") if low == 1 else noun
        raise RequestError(422, f"{name}: expected at least {low}{noun}, got {value}")
    if high is not None and value > high:
        option = f" (the server's {schema['x-option']})" if "x-option" in schema else ""
        raise RequestError(422, f"{name}: expected at most {high}{noun}{option}, got {value}")


def _describe(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(o) for o in schema["anyOf"])
    words = []
    for kind in _types(schema):
        if kind == "array" and "items" in schema and "type" in schema["items"]:
            words.append(f"an array of {_describe(schema['items']).split(' ', 1)[1]}s")
        else:
            words.append(_ARTICLES[kind])
    return " or ".join(words)
