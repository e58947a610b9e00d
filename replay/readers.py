"""Readers: DSJSON files (plain or gzipped), a Kafka topic, the Open Bandit Dataset.

Every reader validates at the boundary: a malformed line is reported as
``file:line: reason``, skipped and counted (``strict=True`` raises instead), and a
logging probability outside (0, 1] is an error. Events are deduplicated by
``EventId`` (the joined topic is at-least-once).

DSJSON shapes understood:

* joined events of this service (``offers.joined``: canonical features, ``ids``,
  ``o`` with per-slot rewards when ``slots`` > 1);
* VW / Personalizer DSJSON (``_label_cost``, ``_label_probability``,
  ``_labelIndex``, ``a``, ``p``, ``c._multi``; ``_skipLearn`` rows are skipped);
* VW conditional-contextual-bandit DSJSON (``c._slots`` and ``_outcomes`` with
  ``_a``/``_p``/``_label_cost`` per slot).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.core.hashing import hash_features
from replay.errors import LogError
from replay.logs import CONTEXT_DIM, LogBuilder, Logs


def _epoch(ts: Any, fallback: float) -> float:
    if isinstance(ts, str) and ts:
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return fallback
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return float(ts)
    return fallback


def _prob(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{what} must be a number")
    if not 0.0 < float(x) <= 1.0:
        raise ValueError(f"{what} {x} is outside (0, 1]")
    return float(x)


def _num(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{what} must be a finite number")
    return float(x)


def _action_name(i: int, feats: Any, ids: list[Any] | None) -> str:
    if ids is not None and i < len(ids) and isinstance(ids[i], str):
        return str(ids[i])
    if isinstance(feats, dict):
        for key in ("_tag", "id"):
            if isinstance(feats.get(key), (str, int)):
                return str(feats[key])
        for v in feats.values():  # Personalizer nests ids in a namespace: {"i": {"id": ..}}
            if isinstance(v, dict) and isinstance(v.get("id"), (str, int)):
                return str(v["id"])
    return f"#{i + 1}"


def _kinds(rewards: Any) -> set[str]:
    out = set()
    if isinstance(rewards, list):
        for r in rewards:
            if isinstance(r, dict) and isinstance(r.get("v"), (int, float)) and r["v"] > 0:
                out.add(str(r.get("kind") or "reward"))
    return out


class DSJSONParser:
    """Turns one decoded DSJSON object into rows of a :class:`LogBuilder`."""

    def __init__(self, builder: LogBuilder, keep_rows: bool) -> None:
        self.b = builder
        self.keep_rows = keep_rows
        self.seen: set[str] = set()
        self.duplicates = 0

    def add(self, obj: Any, index: int) -> None:
        if not isinstance(obj, dict):
            raise ValueError("line is not a JSON object")
        eid = obj.get("EventId")
        if not isinstance(eid, str) or not eid:
            raise ValueError("EventId must be a non-empty string")
        if eid in self.seen:
            self.duplicates += 1
            return
        if obj.get("_skipLearn") is True:
            self.seen.add(eid)
            return  # a deferred event that was never activated
        c = obj.get("c")
        if not isinstance(c, dict) or not isinstance(c.get("_multi"), list) or not c["_multi"]:
            raise ValueError("c._multi must be a non-empty list of actions")
        multi = c["_multi"]
        ids = obj.get("ids") if isinstance(obj.get("ids"), list) else None
        names = [_action_name(i, f, ids) for i, f in enumerate(multi)]
        gids = [self.b.action(name, f) for name, f in zip(names, multi, strict=True)]
        context_obj = {k: v for k, v in c.items() if k not in ("_multi", "_slots")}
        ctx = hash_features(context_obj, CONTEXT_DIM)
        ts = _epoch(obj.get("Timestamp"), float(index))
        # for VW policies: features, whether they are this service's canonical ones,
        # and where each offer id sits in _multi
        row = (context_obj, multi, ids is not None, {nm: i for i, nm in enumerate(names)}) \
            if self.keep_rows else None
        if "_outcomes" in obj:
            self._ccb(obj, eid, gids, ctx, ts, row)
        else:
            self._cb(obj, eid, gids, ctx, ts, row)
        self.seen.add(eid)

    def _cb(self, obj: dict[str, Any], eid: str, gids: list[int], ctx: np.ndarray, ts: float,
            row: Any) -> None:
        n = len(gids)
        a, p = obj.get("a"), obj.get("p")
        if not isinstance(a, list) or not a or not all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n for x in a):
            raise ValueError(f"a must list action indices in 1..{n}")
        if p is None and "_label_probability" not in obj:
            raise ValueError("no logging probabilities (p, _label_probability): "
                             "counterfactual estimates need them")
        if not isinstance(p, list) or len(p) != len(a):
            raise ValueError("p must be aligned with a")
        if "_label_cost" not in obj:
            raise ValueError("no _label_cost: a decision without its reward (read the joined "
                             "topic, not the decisions topic)")
        cost = _num(obj["_label_cost"], "_label_cost")
        slots = obj.get("slots", 1)
        slots = slots if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1 \
            else 1
        dist = [0.0] * n
        if len(a) == n:
            for ai, pi in zip(a, p, strict=True):
                dist[ai - 1] = float(pi)
        full = dist if len(a) == n and slots == 1 else None
        o = obj.get("o")
        rewards: list[Any] = o if isinstance(o, list) else []
        label = obj.get("_labelIndex")
        first = (label if isinstance(label, int) and not isinstance(label, bool) and
                 0 <= label < n else a[0] - 1)
        prob = _prob(obj.get("_label_probability", p[0]), "_label_probability")
        if slots == 1:
            self.b.add(str(obj["EventId"]), gids, first, 0, prob, -cost, ts, ctx,
                       _kinds(rewards), full, row, str(obj.get("arm") or ""))
            return
        remaining = list(range(n))
        ids = obj.get("ids") if isinstance(obj.get("ids"), list) else None
        raw_ids, raw_ex = obj.get("slot_ids"), obj.get("slot_exclude")
        slot_ids: list[Any] = raw_ids if isinstance(raw_ids, list) else []
        exclude: list[Any] = raw_ex if isinstance(raw_ex, list) else []
        for s in range(min(slots, len(a))):
            chosen = a[s] - 1
            sid = slot_ids[s] if s < len(slot_ids) else None
            per_slot = [r for r in rewards if isinstance(r, dict) and
                        ((r.get("slot") or 1) == s + 1 if "slot_id" not in r
                         else r["slot_id"] == sid)]
            reward = sum(_num(r.get("v"), "o[].v") for r in per_slot)
            banned = set(exclude[s]) if s < len(exclude) and isinstance(exclude[s], list) \
                else set()
            allowed = [i for i in remaining if ids is None or ids[i] not in banned]
            if chosen not in allowed:
                raise ValueError(f"slot {s + 1} shows an offer it excludes")
            cands = [gids[i] for i in allowed]
            self.b.add(f"{obj['EventId']}#{s + 1}", cands, allowed.index(chosen), s,
                       _prob(p[s], f"p[{s}]"), reward, ts, ctx, _kinds(per_slot), None, row,
                       str(obj.get("arm") or ""))
            remaining.remove(chosen)

    def _ccb(self, obj: dict[str, Any], eid: str, gids: list[int], ctx: np.ndarray, ts: float,
             row: Any) -> None:
        outcomes = obj["_outcomes"]
        if not isinstance(outcomes, list) or not outcomes:
            raise ValueError("_outcomes must be a non-empty list")
        remaining = list(range(len(gids)))
        c = obj.get("c") or {}
        raw_slots = c.get("_slots")
        slots: list[Any] = raw_slots if isinstance(raw_slots, list) else []
        o = obj.get("o")
        rewards: list[Any] = o if isinstance(o, list) else []
        for s, out in enumerate(outcomes):
            if not isinstance(out, dict):
                raise ValueError(f"_outcomes[{s}] must be an object")
            acts, probs = out.get("_a"), out.get("_p")
            if isinstance(acts, int):
                acts, probs = [acts], [probs]
            if not isinstance(acts, list) or not acts or not isinstance(probs, list):
                raise ValueError(f"_outcomes[{s}]._a/_p missing")
            chosen = acts[0]
            if not isinstance(chosen, int) or chosen not in remaining:
                raise ValueError(f"_outcomes[{s}]._a[0] is not an available action")
            cost = _num(out.get("_label_cost", 0.0), f"_outcomes[{s}]._label_cost")
            inc = slots[s].get("_inc") if s < len(slots) and isinstance(slots[s], dict) \
                else None
            allowed = [i for i in remaining if not isinstance(inc, list) or i in inc]
            if chosen not in allowed:
                raise ValueError(f"_outcomes[{s}] chose an action its slot excludes")
            cands = [gids[i] for i in allowed]
            seen = [r for r in rewards if isinstance(r, dict) and (r.get("slot") or 1) == s + 1]
            kinds = _kinds(seen) if rewards else ({"reward"} if cost < 0 else set())
            self.b.add(f"{eid}#{s + 1}", cands, allowed.index(chosen), s,
                       _prob(probs[0], f"_outcomes[{s}]._p[0]"), -cost, ts, ctx,
                       kinds, None, row, str(obj.get("arm") or ""))
            remaining.remove(chosen)


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115


def read_dsjson(paths: Sequence[str | Path], *, strict: bool = False,
                keep_rows: bool = False, progress: bool = False) -> Logs:
    b = LogBuilder()
    parser = DSJSONParser(b, keep_rows)
    index = 0
    for path in map(Path, paths):
        if not path.exists():
            raise LogError(f"{path}: no such file")
        with _open_text(path) as f:
            lines: Iterator[str] = f
            if progress:
                from tqdm import tqdm

                lines = tqdm(f, desc=path.name, unit=" lines", leave=False)
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                index += 1
                try:
                    parser.add(orjson.loads(line), index)
                except orjson.JSONDecodeError as exc:
                    b.skip(f"{path}:{lineno}", f"not valid JSON ({exc})", strict)
                except ValueError as exc:
                    b.skip(f"{path}:{lineno}", str(exc), strict)
    return b.build(keep_rows)


def read_kafka(url: str, *, strict: bool = False, keep_rows: bool = False,
               timeout: float = 30.0, idle: float = 2.0) -> Logs:
    """``kafka://host:port/topic``: every message up to each partition's high-water mark.

    The mark is taken from the first fetch response of each partition (a ListOffsets
    answer can under-report on some brokers); a partition that returns nothing for
    ``idle`` seconds is treated as empty. Messages produced after the mark are left
    for the next run. A fetch that skips offsets below the mark (the embedded broker can
    answer with a producer's batch before an earlier one is readable) is read again from
    the first one missing, for ``GAP_SECONDS``; then the read fails, naming them.
    """
    from bandit.streaming import kafka_client

    rest = url.removeprefix("kafka://")
    bootstrap, _, topic = rest.partition("/")
    if not bootstrap or not topic:
        raise LogError(f"{url}: expected kafka://host:port/topic")
    consumer = kafka_client.consumer(bootstrap, "bandit-replay")
    b = LogBuilder()
    parser = DSJSONParser(b, keep_rows)
    try:
        parts = kafka_client.topic_partitions(consumer, topic, timeout)
        if not parts:
            raise LogError(f"{url}: topic {topic!r} not found")
        consumer.assign([kafka_client.TopicPartition(topic, p, kafka_client.OFFSET_BEGINNING)
                         for p in parts])
        for index, (where, value) in enumerate(
                _up_to_marks(consumer, url, topic, parts, timeout, idle), start=1):
            try:
                parser.add(orjson.loads(value), index)
            except orjson.JSONDecodeError as exc:
                b.skip(where, f"not valid JSON ({exc})", strict)
            except ValueError as exc:
                b.skip(where, str(exc), strict)
    finally:
        consumer.close()
    return b.build(keep_rows)


def _up_to_marks(consumer: Any, url: str, topic: str, parts: list[int], timeout: float,
                 idle: float) -> Iterator[tuple[str, bytes]]:
    """(``topic[partition]@offset``, value) of every message of the assigned partitions
    below each one's high-water mark (see :func:`read_kafka`), each partition's in
    offset order without gaps (:class:`bandit.streaming.gaps.Gapless`): a gap the
    broker does not fill within ``GAP_SECONDS`` is an error, not a silent loss."""
    import time

    from bandit.streaming import kafka_client
    from bandit.streaming.gaps import Gapless

    tps = {p: kafka_client.TopicPartition(topic, p) for p in parts}
    reader = Gapless(consumer, kafka_client.GAP_SECONDS)
    ends: dict[int, int] = {}
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    last_message = time.monotonic()
    while len(done) < len(parts):
        now = time.monotonic()
        if now > deadline:
            raise LogError(f"{url}: timed out reading partitions "
                           f"{sorted(set(parts) - done)}")
        reading = {p for _, p, _ in reader.open_gaps() if p not in done}
        if now - last_message > idle and not reading:
            break  # whatever has not answered by now holds nothing
        messages = reader.consume(5000, 0.2)
        # (a gap in a partition read to its mark lies past it: nothing replay reads)
        for gap in [*reader.given_up, *reader.overdue()]:
            if gap.partition in done:
                continue
            why = "are no longer in the topic (retention)" if gap.retention else \
                f"were not returned in {reader.budget:g} s"
            raise LogError(f"{url}: {gap} {why}")
        reader.given_up.clear()
        for m in messages:
            if m.error() is not None:
                continue
            p, off = int(m.partition() or 0), int(m.offset() or 0)
            if p in done:
                continue
            if p not in ends:
                _, high = consumer.get_watermark_offsets(tps[p], cached=True)
                ends[p] = max(int(high), off + 1)
            if off >= ends[p]:
                done.add(p)
                continue
            last_message = time.monotonic()
            deadline = last_message + timeout
            yield f"{topic}[{p}]@{off}", m.value() or b""
            if off + 1 >= ends[p]:
                done.add(p)


def read_obd(directory: str | Path, behavior: str = "bts", campaign: str = "all", *,
             strict: bool = False) -> Logs:
    """Open Bandit Dataset: ``<dir>/<behavior>/<campaign>/<campaign>.csv`` and
    ``item_context.csv`` beside it. Positions 1..3 become slots 0..2; every item of
    the campaign is a candidate on every row (as in the dataset's own loader)."""
    base = Path(directory) / behavior / campaign
    path = base / f"{campaign}.csv"
    items_path = base / "item_context.csv"
    for p in (path, items_path):
        if not p.exists():
            raise LogError(f"{p}: no such file (expected the Open Bandit Dataset layout "
                           "<dir>/{random,bts}/{all,men,women}/)")
    b = LogBuilder()
    with open(items_path, newline="") as f:
        reader = csv.DictReader(f)
        items: dict[int, dict[str, str]] = {}
        for lineno, rec in enumerate(reader, 2):
            try:
                items[int(rec["item_id"])] = {k: v for k, v in rec.items()
                                              if k.startswith("item_feature")}
            except (KeyError, ValueError, TypeError):
                b.skip(f"{items_path}:{lineno}", "item_id must be an integer", strict)
    n_items = max(items) + 1 if items else 0
    gids = [b.action(str(i), items.get(i, {})) for i in range(n_items)]
    positions: list[int] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for lineno, rec in enumerate(reader, 2):
            where = f"{path}:{lineno}"
            try:
                item = int(rec["item_id"])
                pos = int(rec["position"])
                click = float(rec["click"])
                ps = _prob(float(rec["propensity_score"]), "propensity_score")
            except KeyError as exc:
                b.skip(where, f"missing column {exc}", strict)
                continue
            except (ValueError, TypeError) as exc:
                b.skip(where, str(exc), strict)
                continue
            if not 0 <= item < n_items:
                b.skip(where, f"item_id {item} is not in item_context.csv", strict)
                continue
            user = {k: v for k, v in rec.items()
                    if k and (k.startswith("user_feature") or k.startswith("user-item"))}
            ctx = hash_features(user, CONTEXT_DIM)
            ts = _epoch(rec.get("timestamp", ""), float(lineno))
            positions.append(pos)
            b.add(f"{path.name}:{lineno}", gids, item, pos, ps, click, ts, ctx,
                  {"click"} if click > 0 else set())
    # positions are dense-ranked to 0-based slots, as the dataset's own loader does
    ranks = {p: i for i, p in enumerate(sorted(set(positions)))}
    b.position = [ranks[p] for p in b.position]
    logs = b.build()
    return logs


def read(source: str, fmt: str = "auto", *, strict: bool = False, keep_rows: bool = False,
         behavior: str = "bts", campaign: str = "all", progress: bool = False) -> Logs:
    """Dispatch on ``fmt`` (``auto`` picks kafka for ``kafka://`` and dsjson otherwise)."""
    if fmt == "auto":
        fmt = "kafka" if source.startswith("kafka://") else \
            ("obd" if Path(source).is_dir() else "dsjson")
    if fmt == "kafka":
        return read_kafka(source, strict=strict, keep_rows=keep_rows)
    if fmt == "obd":
        return read_obd(source, behavior, campaign, strict=strict)
    if fmt == "dsjson":
        p = Path(source)
        files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
        return read_dsjson(files, strict=strict, keep_rows=keep_rows, progress=progress)
    raise LogError(f"unknown format {fmt!r} (dsjson, obd, kafka)")
