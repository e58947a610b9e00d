from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest


def manifest(extra):
    return Manifest("000001", "model-000001.vw", "0" * 64, "epsilon:0.05", 3, "t", {}, extra)


def test_a_checkpoint_round_trips_through_a_manifest_and_keeps_other_keys():
    ck = Checkpoint({"file": "state-1.json", "sha256": "ab"}, {"learned": 3}, 2, {"pending": 1},
                    {"o1": [1, 0.5]}, {"from": "2026-01-01T00:00:00.000Z",
                                       "to": "2026-01-02T00:00:00.000Z"}, 7,
                    {"imported_from": "000009"})
    again = Checkpoint.of(manifest(ck.to_extra()))
    assert again == ck
    assert again.log_range() == ("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z")


def test_a_manifest_without_learner_state_reads_as_an_empty_checkpoint():
    ck = Checkpoint.of(manifest({"imported_from": "000002", "lag": "x"}))
    assert ck.join_state is None and ck.counters == {} and ck.dead_letters == 0
    assert ck.lag == 0 and ck.log_range() is None and ck.other == {"imported_from": "000002"}
    assert Checkpoint.of(None) == Checkpoint()
