import os

from bandit.streaming.spool import SpoolReader, SpoolWriter, adopt_orphans, encode_record


def test_write_read_commit(tmp_path):
    w = SpoolWriter(tmp_path)
    for i in range(10):
        w.append("d", f"k{i}\t\n|", b'{"i":%d}' % i)
    r = SpoolReader(w.dir, owned=True)
    recs = r.read(4, w.position())
    assert [x.key for x in recs] == ["k0\t\n|", "k1\t\n|", "k2\t\n|", "k3\t\n|"]
    assert recs[2].value == b'{"i":2}'
    r.commit(recs[-1].end)
    again = SpoolReader(w.dir, owned=True)  # the cursor survives a restart
    assert [x.key for x in again.read(100, w.position())][0] == "k4\t\n|"
    assert len(again.read(100, w.position())) == 6
    w.close()


def test_torn_last_line_is_not_read(tmp_path):
    w = SpoolWriter(tmp_path)
    w.append("r", "a", b"{}")
    seg = next(w.dir.glob("seg-*.log"))
    with open(seg, "ab") as f:
        f.write(encode_record("r", "b", b"{}")[:-3])  # crash mid-write
    r = SpoolReader(w.dir, owned=True)
    assert [x.key for x in r.read(10, w.position())] == ["a"]
    w.close()


def test_segments_rotate_and_are_deleted_once_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr("bandit.streaming.spool.SEGMENT_BYTES", 200)
    w = SpoolWriter(tmp_path)
    for i in range(30):
        w.append("d", str(i), b'{"x":"' + b"y" * 40 + b'"}')
    assert len(list(w.dir.glob("seg-*.log"))) > 5
    r = SpoolReader(w.dir, owned=True)
    got = []
    while True:
        recs = r.read(7, w.position())
        if not recs:
            break
        got += [x.key for x in recs]
        r.commit(recs[-1].end)
    assert got == [str(i) for i in range(30)]
    assert len(list(w.dir.glob("seg-*.log"))) == 1  # only the segment being written
    w.close()


def test_orphans_are_adopted_once_their_owner_is_gone(tmp_path):
    live = SpoolWriter(tmp_path)
    dead = SpoolWriter(tmp_path)
    dead.append("d", "x", b"{}")
    assert adopt_orphans(tmp_path) == []  # both owners hold their lock
    dead.close()
    adopted = adopt_orphans(tmp_path, exclude=live.dir)
    assert len(adopted) == 1
    path, fd = adopted[0]
    assert ".adopted-" in path.name and not dead.dir.exists()
    assert [x.key for x in SpoolReader(path, owned=False).read(10)] == ["x"]
    assert adopt_orphans(tmp_path, exclude=live.dir) == []  # held while draining
    os.close(fd)
    live.close()


def test_an_adopted_spool_with_a_torn_last_line_drains(tmp_path):
    dead = SpoolWriter(tmp_path)
    dead.append("d", "x", b"{}")
    dead.append("d", "y", b"{}")
    seg = next(dead.dir.glob("seg-*.log"))
    with open(seg, "ab") as f:
        f.write(encode_record("d", "z", b"{}")[:-3])  # the owner died mid-write
    dead.close()
    [(path, fd)] = adopt_orphans(tmp_path)
    r = SpoolReader(path, owned=False)
    recs = r.read(10)
    assert [x.key for x in recs] == ["x", "y"]
    r.commit(recs[-1].end)
    assert r.drained() and r.pending_bytes() == 0  # the torn tail does not hold it open
    os.close(fd)


def test_a_decision_keeps_its_c_offset_through_the_spool(tmp_path):
    w = SpoolWriter(tmp_path)
    w.append("d", "k0", b'{"EventId":"k0","c":{}}', 15)
    w.append("r", "k0", b'{"EventId":"k0","v":1}')
    recs = SpoolReader(w.dir, owned=True).read(10, w.position())
    assert [(x.kind, x.c_at) for x in recs] == [("d", 15), ("r", None)]
    w.close()


def test_the_writers_memory_gives_what_reading_the_spool_back_gives(tmp_path, monkeypatch):
    """``SpoolWriter.take`` (the shipper's fast path) and ``SpoolReader.read`` (its
    plain twin, from disk) agree record for record, byte for byte, across segment
    rotations, odd keys, offsets and an overflow of the memory (after which the
    reader goes to disk and the memory resumes once it has caught up)."""
    import random

    monkeypatch.setattr("bandit.streaming.spool.SEGMENT_BYTES", 300)
    monkeypatch.setattr("bandit.streaming.spool.TAIL_LIMIT", 25)
    rng = random.Random(7)
    w = SpoolWriter(tmp_path)
    r = SpoolReader(w.dir, owned=True)
    from_memory, from_disk = [], []
    overflowed = resumed = 0
    for step in range(40):
        for _ in range(rng.randrange(0, 40)):
            kind = rng.choice("dr")
            key = rng.choice(["a", "k\t\n|é", str(rng.random())])
            value = b'{"v":"' + bytes(rng.choice(b"xyz") for _ in range(rng.randrange(60))) + b'"}'
            w.append(kind, key, value, rng.randrange(100) if kind == "d" else None)
        taken = w.take()
        if taken is None:  # overflowed: read back from disk until caught up
            overflowed += 1
            assert not w.resume_tail(r.cursor)  # not caught up: stays on disk
            assert w.take() is None
            while True:
                recs = r.read(7, w.position())
                if not recs:
                    break
                from_disk += recs
                from_memory += recs
                r.commit(recs[-1].end)
            assert w.resume_tail(r.cursor)
            resumed += 1
            continue
        disk = []
        while len(disk) < len(taken):
            recs = r.read(len(taken) - len(disk), w.position())
            assert recs, step
            disk += recs
        assert taken == disk  # kind, key, value bytes, c offset and end position
        from_memory += taken
        from_disk += disk
        if taken:
            r.commit(taken[-1].end)
    assert overflowed and resumed and len(from_memory) > 300
    assert from_memory == from_disk
    assert r.read(10, w.position()) == [] and w.take() == []
    w.close()


def test_an_unpersisted_cursor_means_re_reading_never_losing(tmp_path):
    """The shipper persists its cursor a few times a second: a successor of a crash
    re-reads what was shipped since (duplicates, which consumers drop), never skips."""
    w = SpoolWriter(tmp_path)
    for i in range(6):
        w.append("d", f"k{i}", b"{}")
    r = SpoolReader(w.dir, owned=True)
    first = r.read(2, w.position())
    r.commit(first[-1].end)  # persisted
    more = r.read(3, w.position())
    r.commit(more[-1].end, persist=False)
    assert [x.key for x in r.read(10, w.position())] == ["k5"]  # in memory: moved on
    crashed = SpoolReader(w.dir, owned=True)
    assert [x.key for x in crashed.read(10, w.position())] == ["k2", "k3", "k4", "k5"]
    r.persist()
    assert [x.key for x in SpoolReader(w.dir, owned=True).read(10, w.position())] == ["k5"]
    w.close()


def test_a_live_read_stays_on_a_segment_its_writer_finished_during_the_read(tmp_path,
                                                                             monkeypatch):
    """Another process's spool (``live``): a segment the writer was still appending to
    while it was read is read again, not left for the next one, even when the writer
    rotated meanwhile. The race is made certain: the writer fills the segment and
    starts the next one right after the reader's read of it."""
    from bandit.streaming import spool

    monkeypatch.setattr(spool, "SEGMENT_BYTES", 400)
    w = SpoolWriter(tmp_path)
    keys = iter(range(1000))
    w.append("d", str(next(keys)), b'{"x":1}')
    raced = []

    class RacingFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, *at):
            return self.f.seek(*at)

        def read(self, n):
            data = self.f.read(n)
            if not raced:  # the writer appends on past this segment's end meanwhile
                raced.append(w.segment)
                while w.segment == raced[0]:
                    w.append("d", str(next(keys)), b'{"x":1}')
            return data

    real_open = open
    monkeypatch.setattr(spool, "open", lambda p, m="r": RacingFile(real_open(p, m)),
                        raising=False)
    reader = SpoolReader(w.dir, owned=True)  # (as the shipper child reads its server's)
    got: list[str] = []
    for _ in range(10):
        recs = reader.read(1000, live=True)
        got += [r.key for r in recs]
        if recs:
            reader.commit(recs[-1].end, persist=False)
    written = int(next(keys))
    assert raced and got == [str(i) for i in range(written)]
    w.close()


_SHORT_WRITE = r"""
import resource, signal, sys
from bandit.streaming.spool import SpoolReader, SpoolWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG and short writes, not a signal
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))
w = SpoolWriter(sys.argv[1])
ok = []
for i in range(30):
    try:
        w.append("d", f"k{i}", b'{"v":"' + b"x" * 900 + b'"}')
        ok.append(f"k{i}")
    except OSError as exc:
        print("refused:", exc, file=sys.stderr)
        break
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
w.append("d", "after", b"{}")
seg = next(w.dir.glob("seg-*.log")).read_bytes()
keys = [x.key for x in SpoolReader(w.dir, owned=True).read(1000, w.position())]
print(keys == ok + ["after"], seg.endswith(b"\n"), len(ok), w.error)
"""


def test_a_short_write_is_cut_off_so_the_next_record_is_whole(tmp_path):
    """A file size limit (as a full disk) cuts a record's write short: it is refused
    and cut off, and the record written next is read back intact (not glued to the
    torn one, which the reader would ship as one garbage event)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "short write" in out.stderr  # the limit fell inside a record
    assert out.stdout.split() == ["True", "True", "10", "None"], out.stdout


def test_a_segment_that_cannot_be_opened_leaves_the_writer_as_it_was(tmp_path, monkeypatch):
    """Rotating to a new segment that cannot be created (a full disk) refuses the
    record and changes nothing: the next rotation does not retire the same descriptor
    twice (sync would close it twice) nor skip a segment number."""
    import pytest

    monkeypatch.setattr("bandit.streaming.spool.SEGMENT_BYTES", 100)
    w = SpoolWriter(tmp_path)
    w.append("d", "a", b'{"v":"' + b"x" * 80 + b'"}')
    real_open = w._open

    def full(n: int) -> int:
        raise OSError(28, "No space left on device")

    w._open = full  # type: ignore[method-assign]
    for _ in range(2):
        with pytest.raises(OSError):
            w.append("d", "refused", b"{}")
    w._open = real_open  # type: ignore[method-assign]
    w.append("d", "b", b"{}")
    assert w.segment == 2 and len(w._retired) == 1
    w.sync()  # fsyncs and closes the first segment's descriptor once
    r = SpoolReader(w.dir, owned=True)
    assert [x.key for x in r.read(10, w.position())] == ["a", "b"]
    w.close()
