"""The request bodies the server takes, written down for its OpenAPI schema (/openapi.json, /docs).

The handlers read raw JSON and the service validates it (so an error names the field in OpenAI's
error shape); these schemas say the same rules for clients and for the fuzz tests that generate
requests from the schema (tests/test_fuzz_serve.py). Keep them in step with `Service.parse_chat`,
`store.feedback.from_dict` and `Service.add_documents`.
"""

from __future__ import annotations

ROLES = ["system", "user", "assistant"]

_TEXT_PART = {"type": "object", "required": ["type", "text"],
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_MESSAGE = {"type": "object", "required": ["role", "content"],
            "properties": {"role": {"enum": ROLES},
                           "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}}}
_STOP = {"anyOf": [{"type": "string", "minLength": 1},
                   {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
                   {"type": "null"}]}

CHAT = {"type": "object", "required": ["model", "messages"],
        "properties": {"model": {"type": "string", "description": "'core' or 'worker:NAME' (GET /v1/models)"},
                       "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                       "max_tokens": {"type": "integer", "minimum": 1},
                       "max_completion_tokens": {"type": "integer", "minimum": 1},
                       "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                       "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                       "n": {"const": 1},
                       "stop": _STOP,
                       "stream": {"type": "boolean"},
                       "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}}}

_RESPONSE_ID = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}],
                "description": "the 'id' of a chat completion"}
FEEDBACK = {"type": "object", "required": ["id"], "additionalProperties": False,
            "description": "exactly one of reward, correction, critique, prefer",
            "properties": {"id": _RESPONSE_ID,
                           "reward": {"type": "number", "minimum": 0, "maximum": 1},
                           "correction": {"type": "string", "minLength": 1},
                           "critique": {"type": "string", "minLength": 1},
                           "prefer": _RESPONSE_ID,
                           "by": {"type": "string"}}}

DOCUMENTS = {"type": "object", "required": ["model", "documents"],
             "description": "documents for a worker whose job is a documents job, learned in the background",
             "properties": {"model": {"type": "string", "description": "'worker:NAME' (GET /v1/models)"},
                            "documents": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                                "type": "object", "required": ["name", "text"],
                                "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                                        "description": "a file name ending .md or .txt"},
                                               "text": {"type": "string", "minLength": 1}}}}}}


def body(schema: dict) -> dict:
    """`openapi_extra` for a route whose JSON body follows `schema`."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
