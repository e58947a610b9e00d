import random

import pytest

from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError


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
    from bandit.stores.modelstore import sha256_file

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


def test_pin_rollback_export_import_round_trip(tmp_path, capsys):
    import asyncio

    from prometheus_client import CollectorRegistry

    from bandit.cli.learn import main as learn_main
    from bandit.config.settings import Settings
    from bandit.core.policy import VWPolicy
    from bandit.server.app import create_app
    from bandit.streaming.sinks import NullSink

    store = ModelStore(tmp_path / "models", keep=3)
    spec = PolicySpec.parse("epsilon:0.1")
    model = VWModel(spec.vw_args())
    versions = [store.publish(model, str(spec), i).version for i in range(3)]
    settings = Settings(model_dir=str(tmp_path / "models"), event_sink="none")
    app = create_app(settings, VWPolicy.fresh(spec), NullSink(), registry=CollectorRegistry(),
                     store=store)
    svc = app.state.service
    assert asyncio.run(svc.refresh_model()) and svc.policy.version == versions[-1]
    # roll back through the CLI: the server swaps to the pinned version
    assert learn_main(["models", "--model-dir", str(store.dir), "rollback", versions[0]]) == 0
    assert asyncio.run(svc.refresh_model()) and svc.policy.version == versions[0]
    # the learner keeps publishing; the pin holds, and pruning keeps the pinned version
    for i in range(4):
        store.publish(model, str(spec), 10 + i)
    assert not asyncio.run(svc.refresh_model()) and svc.policy.version == versions[0]
    assert store.version(versions[0]).version == versions[0]
    assert learn_main(["models", "--model-dir", str(store.dir), "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{versions[0]}" in listing and "pinned" in listing and "current" in listing
    assert learn_main(["models", "--model-dir", str(store.dir), "unpin"]) == 0
    assert asyncio.run(svc.refresh_model()) and svc.policy.version == store.current().version
    # export a version, import it into another store, serve it there
    assert learn_main(["models", "--model-dir", str(store.dir), "export", versions[0],
                       str(tmp_path / "exported")]) == 0
    other = ModelStore(tmp_path / "other")
    assert learn_main(["models", "--model-dir", str(other.dir), "import",
                       str(tmp_path / "exported"), "--pin"]) == 0
    served = other.serving()
    assert served is not None and served.sha256 == store.version(versions[0]).sha256
    other.load(served).close()
    # errors are clear
    assert learn_main(["models", "--model-dir", str(store.dir), "pin", "999999"]) == 1
    assert "no version 999999" in capsys.readouterr().err
    (tmp_path / "exported" / store.version(versions[0]).file).write_bytes(b"tampered")
    assert learn_main(["models", "--model-dir", str(other.dir), "import",
                       str(tmp_path / "exported")]) == 1
    model.close()
    app.state.service.policy.close()


def test_a_checkpoint_with_nothing_new_leaves_a_replaced_model_current(tmp_path):
    """A learner's offsets-only checkpoint of the model it had must not put that model
    back in front of one a server has just put in place (before the learner saw the new
    configuration): the replacement stays current, the old version's record is updated."""
    store = ModelStore(tmp_path)
    m = trained()
    try:
        old = store.publish(m, "epsilon:0.1", 10, {"d:0": 5})
        new = store.replace_model(m, "epsilon:0.02")
        store.update(old, {"d:0": 7}, {"lag": 0})
        assert store.current().version == new.version
        assert store.version(old.version).offsets == {"d:0": 7}
        # with nothing replaced, the update is the current manifest
        again = store.update(new, {"d:0": 9}, {})
        assert store.current() == again and again.offsets == {"d:0": 9}
    finally:
        m.close()
