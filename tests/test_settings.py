from pathlib import Path

import pytest

from bandit.config.settings import Settings
from bandit.core.errors import ConfigError


def test_defaults_are_valid():
    s = Settings.from_env({})
    assert s.port == 8080 and s.max_offers == 50
    assert s.policy == "squarecb:gamma=10,lr=0.5,normalized=0,power_t=0"
    assert s.sink_kind == "file"
    assert s.topic("decisions") == "offers.decisions"


def test_reads_prefixed_variables():
    s = Settings.from_env({"BANDIT_PORT": "9000", "BANDIT_POLICY": "bag:5",
                           "BANDIT_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BANDIT_MODEL_POLL": "0.5"})
    assert (s.port, s.policy, s.model_poll) == (9000, "bag:5", 0.5)
    assert s.sink_kind == "kafka"


@pytest.mark.parametrize("name,value", [
    ("BANDIT_PORT", "eighty"),
    ("BANDIT_PORT", "70000"),
    ("BANDIT_WORKERS", "0"),
    ("BANDIT_MODEL_POLL", "nan"),
    ("BANDIT_POLICY", "thompson"),
    ("BANDIT_POLICY", "epsilon:2"),
    ("BANDIT_EVENT_SINK", "s3"),
    ("BANDIT_REWARD_FUNCTION", "median"),
    ("BANDIT_REWARD_MIN", "5"),
    ("BANDIT_OBJECTIVE", "click ** 2"),
    ("BANDIT_OBJECTIVE", "payout"),
    ("BANDIT_HEADS", "click,click"),
    ("BANDIT_VALUE_EXPLORATION", "epsilon:2"),
    ("BANDIT_MIN_MARGIN", "lots"),
    ("BANDIT_SHARE_CAP", "advertiser:0.3"),
    ("BANDIT_SHARE_CAP", "advertiser:0.0001/10"),
    ("BANDIT_DAILY_BUDGETS", "acme"),
    ("BANDIT_DAILY_BUDGETS", "acme=-5"),
    ("BANDIT_COLD_START", "sometimes"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    assert name.split("_", 1)[1] in str(err.value)


def test_the_arm_guard_baseline_is_checked_at_start_up():
    with pytest.raises(ConfigError, match="ARM_GUARD_BASELINE='populairty'"):
        Settings.from_env({"BANDIT_ARM_GUARD_BASELINE": "populairty"})
    with pytest.raises(ConfigError, match="needs a model arm and a uniform arm"):
        Settings.from_env({"BANDIT_ARM_GUARD_MARGIN": "0.01",
                           "BANDIT_ARM_GUARD_BASELINE": "uniform",
                           "BANDIT_EXPERIMENT": "x:model=0.9,popularity=0.1"})
    s = Settings.from_env({"BANDIT_ARM_GUARD_MARGIN": "0.01",
                           "BANDIT_EXPERIMENT": "x:model=0.9,popularity=0.1"})
    assert s.arm_guard_baseline == "popularity"


def test_kafka_sink_needs_bootstrap():
    with pytest.raises(ConfigError, match="BANDIT_KAFKA_BOOTSTRAP"):
        Settings.from_env({"BANDIT_EVENT_SINK": "kafka"})


def test_frozen_and_overrides_validate():
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    assert s.with_overrides(port=1234).port == 1234
    with pytest.raises(ConfigError):
        s.with_overrides(policy="nope")
    with pytest.raises(ConfigError, match="unknown"):
        s.with_overrides(colour="red")


def test_env_round_trip():
    s = Settings.from_env({"BANDIT_POLICY": "bag:3", "BANDIT_PORT": "1"})
    assert Settings.from_env(s.to_env()) == s


def test_every_number_declares_its_bounds_and_overrides_are_checked_against_them():
    from dataclasses import fields

    numeric = [f for f in fields(Settings) if f.type in ("int", "float", int, float)]
    assert numeric and all("bounds" in f.metadata for f in numeric), \
        [f.name for f in numeric if "bounds" not in f.metadata]
    s = Settings.from_env({})
    with pytest.raises(ConfigError, match="BANDIT_PORT=70000"):
        s.with_overrides(port=70000)
    with pytest.raises(ConfigError, match="BANDIT_EVENT_SINK='s3'"):
        s.with_overrides(event_sink="s3")
    with pytest.raises(ConfigError, match="BANDIT_WORKERS='2'"):
        s.with_overrides(workers="2")


def test_structured_settings_are_parsed_once_into_typed_values():
    from bandit.core.experiments import Experiment
    from bandit.core.policy_spec import PolicySpec
    from bandit.stores.userstore import Cap

    s = Settings.from_env({"BANDIT_POLICY": "bag:3", "BANDIT_FREQUENCY_CAP": "2/60",
                           "BANDIT_OFFER_BUDGETS": "o1=5/10",
                           "BANDIT_EXPERIMENT": "x:model=0.5,uniform=0.5"})
    assert s.policy_spec == PolicySpec.parse("bag:3") and s.lgbm_policy is None
    assert s.cap == Cap.parse("2/60") and s.budgets == {"o1": Cap.parse("5/10")}
    assert s.experiment_spec == Experiment.parse("x:model=0.5,uniform=0.5")
    assert s.policy_spec is s.policy_spec  # the same object: parsed once
    with pytest.raises(ConfigError, match="BANDIT_FREQUENCY_CAP='2/0'"):
        Settings.from_env({"BANDIT_FREQUENCY_CAP": "2/0"})


def test_value_settings_are_parsed_once():
    s = Settings.from_env({"BANDIT_OBJECTIVE": "click + 5 * conversion * payout",
                           "BANDIT_MIN_MARGIN": "1.5", "BANDIT_SHARE_CAP": "category:0.25/400",
                           "BANDIT_DAILY_BUDGETS": "acme=100, globex=50"})
    obj = s.objective_spec
    assert obj is not None and obj is s.objective_spec
    assert obj.heads == ("click", "conversion") and obj.fields == ("payout",)
    spec = s.constraint_spec
    assert (spec.min_margin, spec.share_by, spec.share, spec.window) == \
        (1.5, "category", 0.25, 400)
    assert dict(spec.budgets) == {"acme": 100.0, "globex": 50.0}
    built = spec.build()
    assert built is not None and {c.name for c in built.constraints} == \
        {"min_margin", "share_cap_category", "budget_advertiser"}
    assert Settings().objective_spec is None and Settings().constraint_spec.build() is None


def test_budget_ledger_path():
    assert Settings.from_env({"BANDIT_MODEL_DIR": "/m"}).budget_ledger_path("/m") == \
        Path("/m/budgets.sqlite")
    s = Settings.from_env({"BANDIT_BUDGET_LEDGER": "/pod/budgets.sqlite"})
    assert s.budget_ledger_path("/m") == Path("/pod/budgets.sqlite")
    assert Settings.from_env({"BANDIT_BUDGET_LEDGER": "memory"}).budget_ledger_path("/m") \
        is None
