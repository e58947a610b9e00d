"""The request parser's shortcuts: a known offer list found verbatim in a body, and
event ids, must give exactly what the plain path gives."""

import os

import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core.errors import BadRequest
from bandit.core.schema import RequestParser, new_event_id

OFFERS = [{"id": f"o{i}", "features": {"offer": {"c": f"v{i % 3}", "x": i / 10}}}
          for i in range(6)]


def body(**fields) -> bytes:
    return orjson.dumps({"context": {"user": {"u": "a"}}, "offers": OFFERS, **fields})


def test_a_known_list_found_verbatim_parses_like_the_plain_path():
    warm, cold = RequestParser(Settings()), RequestParser(Settings())
    warm.decide(body(event_id="first"))  # now the list is known
    for fields in ({"event_id": "e2"}, {"event_id": "e3", "exclude": ["o1", "o4"]},
                   {"event_id": "e4", "slots": 2, "context": {"user": {"u": "b"}}}):
        a, b = warm.decide(body(**fields)), RequestParser(Settings()).decide(body(**fields))
        assert a == b
        assert cold.decide(body(**fields)) == b
    # the known tuple itself is reused, not rebuilt
    assert warm.decide(body(event_id="e5")).offers is warm.decide(body(event_id="e6")).offers


def test_bad_fields_around_a_known_list_are_still_refused():
    p = RequestParser(Settings())
    p.decide(body(event_id="first"))
    for fields, field in (({"slots": 0}, "slots"), ({"exclude": "o1"}, "exclude"),
                          ({"exclude": [o["id"] for o in OFFERS]}, "exclude"),
                          ({"context": {"user": {"x": [1, {"y": 2}]}}}, None)):
        with pytest.raises(BadRequest) as e:
            p.decide(body(**fields))
        if field is not None:
            assert e.value.field == field
    with pytest.raises(BadRequest):
        p.decide(body()[:-1])  # truncated JSON: refused, not served from the known list


def test_the_same_bytes_elsewhere_in_a_body_are_not_taken_for_the_list():
    p = RequestParser(Settings())
    p.decide(body(event_id="first"))
    raw = orjson.dumps(OFFERS)
    # the list appears inside the context, and the real offers differ
    sneaky = (b'{"context": {"user": {"u": "a"}, "extra": {"l": ' + raw +
              b'}}, "offers": [{"id": "z"}], "event_id": "s"}')
    with pytest.raises(BadRequest):  # context namespaces must not hold lists of objects
        p.decide(sneaky)
    two = b'{"offers": ' + raw + b', "offers": [{"id": "z"}], "event_id": "t"}'
    assert [o.id for o in p.decide(two).offers] == ["z"]  # the last key wins, as in JSON


def test_the_list_is_found_wherever_it_sits_in_the_body():
    """The parser looks first where the list ended in the last body; bodies whose
    layouts alternate still parse exactly as a fresh parser parses them."""
    warm = RequestParser(Settings())
    raw = orjson.dumps(OFFERS)
    layouts = [body(event_id="last"),
               b'{"offers":' + raw + b',"event_id":"first","context":{"user":{"u":"b"}}}',
               b'{"event_id":"mid","offers":' + raw + b',"slots":2}',
               b'{"event_id":"e","context":{"user":{"u":"' + b"x" * 40 + b'"}},"offers":' +
               raw + b'}']
    for _ in range(3):
        for b in layouts:
            assert warm.decide(b) == RequestParser(Settings()).decide(b)


def test_event_ids_are_unique_and_differ_in_a_forked_worker():
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 for i in ids)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker forked from this process
        os.write(w, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    assert child != new_event_id() and child not in ids
