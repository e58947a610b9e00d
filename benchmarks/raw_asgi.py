"""The decide benchmark's baseline, and the floor of a logged VW decision.

The baseline: a raw ASGI app on the same uvicorn settings as ``bandit-serve`` that
reads the request body, parses it with orjson and answers with the decision server's
own reply bytes for that request (looked up by the body's ``event_id`` in a file of
replies captured from the decision server). So it does the HTTP, the body read and
the JSON parse, and sends exactly the bytes decide sends, but decides nothing and
logs nothing.

With ``--floor SPOOL_DIR`` it also does, per request, the two parts no logged VW
decision can leave out, with the service's own classes: one prediction of a VW model
built with the decision server's arguments (:class:`bandit.core.vw_adapter.VWModel`,
its offer examples cached as the server caches them) and one record appended to a spool
(:class:`bandit.streaming.spool.SpoolWriter`; the request body, about as long as a
decision event). Nothing else: the request is validated and its features rendered
once, the first time its ``event_id`` is seen, and kept; no draw, no event encoding,
no metrics, no shipping, no fsync of the spool. ``GET /floorz`` reports how many
predictions and records it made.

    python benchmarks/raw_asgi.py PORT REPLIES_JSON [--floor SPOOL_DIR]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import orjson
import uvicorn

_JSON = (b"content-type", b"application/json")


class Floor:
    """One VW prediction and one spooled record per request (see the module doc)."""

    def __init__(self, spool_dir: str) -> None:
        from bandit.config.settings import Settings
        from bandit.core.policy_spec import PolicySpec
        from bandit.core.schema import RequestParser
        from bandit.core.vw_adapter import VWModel
        from bandit.streaming.spool import SpoolWriter

        # the decide benchmark's policy, as bandit-serve builds it
        self.model = VWModel(PolicySpec.parse("epsilon:0.05").vw_args(0))
        self.parser = RequestParser(Settings.from_env())
        self.writer = SpoolWriter(spool_dir, keep_tail=False)
        self.rendered: dict[str, tuple[Any, Sequence[str]]] = {}
        self.predicted = 0

    def __call__(self, event_id: str, raw: bytes) -> None:
        features = self.rendered.get(event_id)
        if features is None:  # first sight: validated and rendered once, then kept
            request = self.parser.decide(raw)
            features = (request.context, [o.line for o in request.offers])
            self.rendered[event_id] = features
        pmf = self.model.predict(*features)
        self.predicted += len(pmf) == len(features[1])  # a probability for every offer
        self.writer.append("decision", event_id, raw)

    def counts(self) -> bytes:
        return orjson.dumps({"predicted": self.predicted, "spooled": self.writer.appended})


def make_app(replies: dict[str, bytes], floor: Floor | None = None) -> Any:
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
            raw = b"".join(chunks)
            body = orjson.loads(raw)
            event_id = body.get("event_id")
            data = replies.get(event_id, b"")
            if not data:
                status, data = 404, b'{"error":{"code":"NotFound","message":"no reply"}}'
            elif floor is not None:
                floor(event_id, raw)
        elif scope["path"] == "/floorz" and floor is not None:
            data = floor.counts()
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    floor = Floor(sys.argv[4]) if sys.argv[3:4] == ["--floor"] else None
    with open(path, "rb") as f:
        replies = {k: v.encode() for k, v in orjson.loads(f.read()).items()}
    # the same uvicorn settings as bandit-serve (bandit/cli/serve.py)
    uvicorn.run(make_app(replies, floor), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, timeout_keep_alive=5, server_header=False,
                limit_concurrency=2048)  # BANDIT_MAX_CONNECTIONS default


if __name__ == "__main__":
    main()
