"""The decide benchmark's baseline: a raw ASGI app on the same uvicorn settings as
``bandit-serve`` that reads the request body, parses it with orjson and answers
with the decision server's own reply bytes for that request (looked up by the
body's ``event_id`` in a file of replies captured from the decision server).

So it does the HTTP, the body read and the JSON parse, and sends exactly the bytes
decide sends, but decides nothing and logs nothing.

    python benchmarks/raw_asgi.py PORT REPLIES_JSON
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn

_JSON = (b"content-type", b"application/json")


def make_app(replies: dict[str, bytes]) -> Any:
    health = b'{"status":"ok"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, data = 200, health
        if scope["path"] == "/v1/decide":
            body = orjson.loads(b"".join(chunks))
            data = replies.get(body.get("event_id"), b"")
            if not data:
                status, data = 404, b'{"error":{"code":"NotFound","message":"no reply"}}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as f:
        replies = {k: v.encode() for k, v in orjson.loads(f.read()).items()}
    # the same uvicorn settings as bandit-serve (bandit/cli/serve.py)
    uvicorn.run(make_app(replies), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, timeout_keep_alive=5, server_header=False,
                limit_concurrency=2048)  # BANDIT_MAX_CONNECTIONS default


if __name__ == "__main__":
    main()
