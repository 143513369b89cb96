"""The JSON API's shared machinery: request parsing, responses, OpenAPI.

Each feature's ``api.py`` declares its endpoints with :func:`operation`, which
records them for the OpenAPI document (so the document is generated from the
code that serves the requests), parses and validates the JSON body or query
string into pydantic models, and serialises the pydantic response.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from hub.errors import HubError
from hub.i18n import N_
from hub.inputs import MAX_ID, UnsafeJson, loads_json

PREFIX = "/api/v1"
blueprint = Blueprint("api", __name__, url_prefix=PREFIX)

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str]


class ErrorBody(BaseModel):
    error: ErrorDetail


@dataclass(frozen=True)
class Operation:
    rule: str
    method: str
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    auth: bool
    form: type[BaseModel] | None = None  # a multipart/form-data body, documented (the view reads it)


OPERATIONS: list[Operation] = []


class BadJson(HubError):
    code = "invalid_json"


def parse_json(model: type[M]) -> M:
    raw = request.get_data(cache=True)
    if not request.is_json:
        raise HubError(N_("Send a JSON body with Content-Type: application/json."))
    try:
        data = loads_json(raw or b"null")
    except UnsafeJson as exc:
        raise BadJson(exc.template, None, **exc.params) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(N_("The body is not valid JSON: %(reason)s"), None, reason=exc) from None
    if not isinstance(data, dict):
        raise BadJson(N_("The body must be a JSON object."))
    return model.model_validate(data)


def parse_query(model: type[M]) -> M:
    return model.model_validate(request.args.to_dict())


def operation(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    auth: bool = False,
    form: type[BaseModel] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an endpoint: parse ``body``/``query``, call the view, serialise ``response``.

    ``form`` only documents a multipart/form-data body (files are streams, not JSON):
    the view reads ``request.files`` and ``request.form`` itself.
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        OPERATIONS.append(Operation(PREFIX + rule, method, summary, bp.name, body, query, response, status, auth, form))

        @functools.wraps(fn)
        def view(**path: Any) -> Any:
            if body is not None and request.mimetype != "multipart/form-data":
                path["body"] = parse_json(body)
            if query is not None:
                path["query"] = parse_query(query)
            result = fn(**path)
            if isinstance(result, BaseModel):
                return jsonify(result.model_dump(mode="json")), status
            return result

        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return fn

    return decorator


def no_content() -> Response:
    return Response(status=204)


_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}  # hub.inputs.IdConverter


def openapi_document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for op in OPERATIONS:
        models.update(m for m in (op.body, op.response, op.form) if m is not None)
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})
    error = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = _PARAM.sub(r"{\2}", op.rule)
        params: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _ID_SCHEMA if conv == "int" else {"type": "string"},
            }
            for conv, name in _PARAM.findall(op.rule)
        ]
        if op.query is not None:
            for name, field in op.query.model_fields.items():
                params.append(
                    {
                        "name": field.alias or name,
                        "in": "query",
                        "required": field.is_required(),
                        "description": field.description or "",
                        "schema": {"type": "string"},
                    }
                )
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
            "parameters": params,
            "responses": {"4XX": error},
        }
        if op.response is not None:
            entry["responses"][str(op.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}},
            }
        else:
            entry["responses"][str(op.status)] = {"description": "OK"}
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}},
            }
        if op.form is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{op.form.__name__}"}}},
            }
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "OER Hub API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
