"""JSON answers, every one `application/json` exactly (aiohttp's json_response adds
`; charset=utf-8`, and KServe's REST client reads an error's text only for exactly
`application/json`; JSON is UTF-8 by definition)."""

from __future__ import annotations

import json

from aiohttp import web


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers,
                        content_type="application/json")
