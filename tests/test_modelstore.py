import random

import pytest

from bandit.modelstore import Manifest, ModelStore, ModelStoreError
from bandit.policy_spec import PolicySpec
from bandit.vw_adapter import VWModel


def trained(seed=0):
    m = VWModel(PolicySpec.parse("epsilon").vw_args())
    rng = random.Random(seed)
    lines = ["|o_id id=a", "|o_id id=b"]
    for _ in range(50):
        m.learn({"cuser": {"x": rng.random()}}, lines, rng.randrange(2), rng.random(), 0.5)
    return m


def test_publish_load_and_versions(tmp_path):
    store = ModelStore(tmp_path, keep=3)
    assert store.current() is None
    for i in range(5):
        man = store.publish(trained(i), "epsilon:0.05", events_learned=50 * (i + 1),
                            offsets={"offers.decisions:0": 10 * i})
    assert man.version == "000005" and store.current() == man
    assert [m.version for m in store.versions()] == ["000003", "000004", "000005"]
    assert not (tmp_path / "model-000001.vw").exists()
    loaded = store.load(man)
    assert len(loaded.predict({}, ["|o_id id=a", "|o_id id=b"])) == 2
    loaded.close()


def test_corrupt_or_truncated_models_are_refused(tmp_path):
    store = ModelStore(tmp_path)
    man = store.publish(trained(), "epsilon:0.05", 50)
    path = tmp_path / man.file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelStoreError, match="checksum"):
        store.load(man)
    path.unlink()
    with pytest.raises(ModelStoreError, match="missing"):
        store.load(man)


def test_garbage_with_a_matching_checksum_is_refused_by_vw(tmp_path):
    store = ModelStore(tmp_path)
    (tmp_path / "model-000009.vw").write_bytes(b"not a model")
    from bandit.modelstore import sha256_file

    man = Manifest("000009", "model-000009.vw", sha256_file(tmp_path / "model-000009.vw"),
                   "epsilon", 0, "now")
    with pytest.raises(ModelStoreError, match="VW could not load"):
        store.load(man)


def test_unreadable_manifest(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b"{")
    with pytest.raises(ModelStoreError, match="unreadable"):
        ModelStore(tmp_path).current()


def test_rollback_points_the_manifest_back(tmp_path):
    store = ModelStore(tmp_path)
    first = store.publish(trained(1), "epsilon", 1)
    store.publish(trained(2), "epsilon", 2)
    store.set_current(first)
    assert store.current() == first
    assert store.next_version() == "000003"
