"""The OpenAPI 3.1 description of the service (``GET /openapi.json``): the routes' request
schemas (:func:`rnnkit.serve.schema.request_schemas`, the ones the checks read) and their
responses."""

from __future__ import annotations

from typing import Any

from rnnkit.serve.schema import Limits, object_schema, request_schemas

OPENAPI = "3.1.0"

_NUMBER = {"type": ["number", "null"], "description": "null where not finite"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
RESPONSES: dict[str, dict[str, Any]] = {
    "/v1/score": object_schema(
        {
            "results": {
                "type": "array",
                "description": "per line, what LanguageModelRun.score returns",
                "items": object_schema(
                    {
                        "tokens": _STRINGS | {"description": "the tokens as read (<unk> where unknown)"},
                        "surprisal_bits": {"type": "array", "items": _NUMBER},
                        "logprob": _NUMBER | {"description": "log P(line), nats"},
                        "ppl": _NUMBER,
                        "token_count": {"type": "integer"},
                        "oov": {"type": "integer"},
                        "unknown": _STRINGS,
                    }
                ),
            }
        }
    ),
    "/v1/next": object_schema(
        {
            "next": {
                "type": "array",
                "items": object_schema({"token": {"type": "string"}, "p": {"type": "number"}}),
            }
        }
    ),
    "/v1/generate": object_schema({"text": {"type": "string", "description": "the continuation"}}),
    "/v1/tag": object_schema({"tags": {"type": "array", "items": _STRINGS, "description": "per sentence"}}),
    "/v1/classify": object_schema(
        {
            "results": {
                "type": "array",
                "items": object_schema(
                    {
                        "class": {"type": "integer"},
                        "name": {"type": "string"},
                        "probs": {"type": "array", "items": {"type": "number"}},
                    }
                ),
            }
        }
    ),
}

HEALTH = object_schema(
    {
        "status": {"type": "string"},
        "task": {"type": "string"},
        "model": {"type": "object"},
        "vocab_size": {"type": "integer"},
        "uptime_s": {"type": "number"},
        "queue": {"type": "integer", "description": "lines, sentences or prompts waiting for the model"},
        "batching": {"type": "boolean"},
        "served": {
            "type": "object",
            "description": "requests answered by the model so far, and in how many batches",
            "properties": {"requests": {"type": "integer"}, "batches": {"type": "integer"}},
        },
    }
)
ERROR = object_schema({"error": {"type": "string", "description": "what is wrong and what was expected"}})


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi(task: str, paths: list[str], limits: Limits, title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of a service of ``task`` offering ``paths``."""
    requests = request_schemas(limits)
    errors = {
        str(code): {"description": why, "content": {"application/json": {"schema": ERROR}}}
        for code, why in (
            (400, "the body is not a JSON object"),
            (408, "the body did not arrive within --timeout"),
            (413, "the body or its text is over the limit"),
            (422, "a field is missing, unknown, of the wrong type or out of range"),
            (500, "an internal error (logged; the service goes on)"),
            (503, "busy: the request waited in the queue past --timeout"),
            (504, "the computation ran past --timeout"),
        )
    }
    spec: dict[str, Any] = {
        "get": {
            "summary": "the task, the model and the queue",
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": HEALTH}}}},
        }
    }
    described: dict[str, Any] = {"/v1/health": spec}
    for path in paths:
        ok = {"description": "ok", "content": _json(RESPONSES[path])}
        described[path] = {
            "post": {
                "summary": f"{path.rsplit('/', 1)[1]} (concurrent requests are micro-batched)",
                "requestBody": {"required": True, "content": _json(requests[path])},
                "responses": {"200": ok} | errors,
            }
        }
    info = {"title": title, "version": "1", "description": f"rnnkit serve: a {task!r} model"}
    return {"openapi": OPENAPI, "info": info, "paths": described}
