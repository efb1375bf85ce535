"""Every number the read API accepts has bounds that fit PostgreSQL (finding L1).

An unbounded integer (``{"version": 39626612227625680896}``) passed validation and
overflowed the query parameter, a 500. Rather than trust each route, this walks the
OpenAPI document and requires a minimum and a maximum (within int8) on every
integer and number of every parameter and request body.
"""

from __future__ import annotations

from typing import Any

from api.app import create_app
from learnstream.settings import Settings

INT8_MAX = 2**63 - 1


def _unbounded(document: dict[str, Any]) -> list[str]:
    components = document.get("components", {}).get("schemas", {})
    found: list[str] = []

    def walk(schema: dict[str, Any], where: str, seen: frozenset[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], where, seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where, seen)
        if schema.get("type") in ("integer", "number"):
            low = schema.get("minimum", schema.get("exclusiveMinimum"))
            high = schema.get("maximum", schema.get("exclusiveMaximum"))
            if low is None or high is None or high > INT8_MAX or low < -INT8_MAX - 1:
                found.append(f"{where}: {schema}")
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", seen)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[]", seen)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{where}{{}}", seen)

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                walk(
                    parameter["schema"],
                    f"{label} {parameter['in']}.{parameter['name']}",
                    frozenset(),
                )
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if "schema" in media:
                    walk(media["schema"], f"{label} body", frozenset())
    return found


def test_every_numeric_input_of_the_api_is_bounded() -> None:
    document = create_app(Settings()).openapi()
    assert _unbounded(document) == []


def test_the_walk_finds_an_unbounded_integer() -> None:
    document = {
        "paths": {
            "/x": {
                "post": {
                    "parameters": [{"in": "query", "name": "n", "schema": {"type": "integer"}}],
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/B"}}
                        }
                    },
                }
            }
        },
        "components": {"schemas": {"B": {"properties": {"v": {"type": "integer", "minimum": 1}}}}},
    }
    assert len(_unbounded(document)) == 2
