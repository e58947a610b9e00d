"""Service configuration: one frozen dataclass built from ``BANDIT_*`` variables.

Every field has a default that works on one machine (``make demo``); a bad value
stops start-up with a :class:`~bandit.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.errors import ConfigError

if TYPE_CHECKING:
    from bandit.policy import RankingOptions

PREFIX = "BANDIT_"


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{PREFIX}{name}={value} must be between {lo} and {hi}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{PREFIX}{name}={raw} must be a finite number in [{lo}, {hi}]")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(PREFIX + name)
    return default if raw is None or raw == "" else raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{PREFIX}{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{PREFIX}{name}={raw!r} must be true or false")


@dataclass(frozen=True)
class Settings:
    """All runtime configuration. Field ``foo_bar`` is read from ``BANDIT_FOO_BAR``."""

    # serving
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    policy: str = "squarecb:gamma=10,lr=3,normalized=0"  # see README, learning quality
    seed: int = 0
    # storage
    model_dir: str = "var/models"
    model_poll: float = 0.5
    model_keep: int = 20
    event_sink: str = "auto"
    event_dir: str = "var/events"
    spool_dir: str = "var/spool"
    # kafka
    kafka_bootstrap: str = ""
    topic_prefix: str = "offers."
    partitions: int = 4
    kafka_compression: str = "lz4"  # of the batches every producer of the service sends
    # learner
    reward_wait: float = 600.0
    reward_function: str = "earliest"
    default_reward: float = 0.0
    checkpoint_events: int = 50000
    checkpoint_seconds: float = 5.0
    # a young model is published sooner: first after this many events learned, then
    # whenever the events learned since the last model reach those it had (0 = off)
    checkpoint_first_events: int = 32
    learner_process: bool = True
    standardize: bool = True  # numeric features standardised by the model (bandit.scaling)
    guard_margin: float = 0.0
    long_wait: float = 0.0
    long_weight: float = 1.0
    attribution: str = "last"
    guard_holdout: float = 0.1
    # request limits
    max_offers: int = 50
    max_body_bytes: int = 1 << 20
    max_id_bytes: int = 256
    max_features: int = 256
    max_name_bytes: int = 256
    max_depth: int = 4
    max_slots: int = 3
    reward_min: float = -1.0
    reward_max: float = 1.0
    # ranking: cold start, diversity, objectives
    warmup_events: int = 0
    popularity_epsilon: float = 0.2
    new_offer_impressions: int = 100
    new_offer_floor: float = 0.02
    diversity: float = 0.0
    diversity_feature: str = "category"
    reward_weights: str = ""
    # users: signals, caps (see bandit.userstore)
    user_store: str = "auto"
    shared_dir: str = ""  # the host's workers share state here (bandit-serve makes one)
    user_salt: str = ""
    signal_ttl: float = 1800.0
    frequency_cap: str = ""
    offer_budgets: str = ""
    max_users: int = 100_000
    # access and abuse (see bandit.server.guard)
    api_keys: str = ""
    rate_limit: float = 0.0
    reward_rate_limit: float = 0.0
    request_timeout: float = 10.0
    max_connections: int = 2048
    # experiments and rollout (see bandit.experiments)
    experiment: str = ""
    mode: str = "online"
    shadow_policy: str = ""
    lgbm_arm: str = ""
    # causal value and safe exploration
    holdout: float = 0.0
    holdout_treatment: str = "none"
    safe_delta: float = 0.0
    explore_budget: int = 0
    protected: str = ""
    arm_guard_margin: float = 0.0
    arm_guard_baseline: str = "popularity"
    arm_guard_min: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e: Mapping[str, str] = os.environ if env is None else env
        s = cls(
            host=_str(e, "HOST", cls.host),
            port=_int(e, "PORT", cls.port, 0, 65535),
            workers=_int(e, "WORKERS", cls.workers, 1, 256),
            policy=_str(e, "POLICY", cls.policy),
            seed=_int(e, "SEED", cls.seed, 0, 2**31 - 1),
            model_dir=_str(e, "MODEL_DIR", cls.model_dir),
            model_poll=_float(e, "MODEL_POLL", cls.model_poll, 0.05, 3600.0),
            model_keep=_int(e, "MODEL_KEEP", cls.model_keep, 1, 100000),
            event_sink=_choice(e, "EVENT_SINK", cls.event_sink, ("auto", "file", "kafka", "none")),
            event_dir=_str(e, "EVENT_DIR", cls.event_dir),
            spool_dir=_str(e, "SPOOL_DIR", cls.spool_dir),
            kafka_bootstrap=_str(e, "KAFKA_BOOTSTRAP", cls.kafka_bootstrap),
            topic_prefix=_str(e, "TOPIC_PREFIX", cls.topic_prefix),
            partitions=_int(e, "PARTITIONS", cls.partitions, 1, 1024),
            kafka_compression=_choice(e, "KAFKA_COMPRESSION", cls.kafka_compression,
                                      ("none", "gzip", "snappy", "lz4", "zstd")),
            reward_wait=_float(e, "REWARD_WAIT", cls.reward_wait, 0.0, 30 * 86400.0),
            reward_function=_choice(e, "REWARD_FUNCTION", cls.reward_function,
                                    ("earliest", "sum", "max", "last")),
            default_reward=_float(e, "DEFAULT_REWARD", cls.default_reward, -1e9, 1e9),
            checkpoint_events=_int(e, "CHECKPOINT_EVENTS", cls.checkpoint_events, 1, 10**9),
            checkpoint_seconds=_float(e, "CHECKPOINT_SECONDS", cls.checkpoint_seconds,
                                      0.01, 86400.0),
            checkpoint_first_events=_int(e, "CHECKPOINT_FIRST_EVENTS",
                                         cls.checkpoint_first_events, 0, 10**9),
            learner_process=_bool(e, "LEARNER_PROCESS", cls.learner_process),
            standardize=_bool(e, "STANDARDIZE", cls.standardize),
            guard_margin=_float(e, "GUARD_MARGIN", cls.guard_margin, 0.0, 1e9),
            long_wait=_float(e, "LONG_WAIT", cls.long_wait, 0.0, 90 * 86400.0),
            long_weight=_float(e, "LONG_WEIGHT", cls.long_weight, 0.0, 1e6),
            attribution=_choice(e, "ATTRIBUTION", cls.attribution, ("last", "split")),
            guard_holdout=_float(e, "GUARD_HOLDOUT", cls.guard_holdout, 0.001, 0.5),
            max_offers=_int(e, "MAX_OFFERS", cls.max_offers, 1, 10000),
            max_body_bytes=_int(e, "MAX_BODY_BYTES", cls.max_body_bytes, 1024, 1 << 30),
            max_id_bytes=_int(e, "MAX_ID_BYTES", cls.max_id_bytes, 8, 65536),
            max_features=_int(e, "MAX_FEATURES", cls.max_features, 1, 100000),
            max_name_bytes=_int(e, "MAX_NAME_BYTES", cls.max_name_bytes, 8, 65536),
            max_depth=_int(e, "MAX_DEPTH", cls.max_depth, 1, 32),
            max_slots=_int(e, "MAX_SLOTS", cls.max_slots, 1, 50),
            reward_min=_float(e, "REWARD_MIN", cls.reward_min, -1e12, 1e12),
            reward_max=_float(e, "REWARD_MAX", cls.reward_max, -1e12, 1e12),
            warmup_events=_int(e, "WARMUP_EVENTS", cls.warmup_events, 0, 10**12),
            popularity_epsilon=_float(e, "POPULARITY_EPSILON", cls.popularity_epsilon, 0.0,
                                      1.0),
            new_offer_impressions=_int(e, "NEW_OFFER_IMPRESSIONS", cls.new_offer_impressions,
                                       0, 10**12),
            new_offer_floor=_float(e, "NEW_OFFER_FLOOR", cls.new_offer_floor, 0.0, 0.5),
            diversity=_float(e, "DIVERSITY", cls.diversity, 0.0, 1.0),
            diversity_feature=_str(e, "DIVERSITY_FEATURE", cls.diversity_feature),
            reward_weights=_str(e, "REWARD_WEIGHTS", cls.reward_weights),
            user_store=_str(e, "USER_STORE", cls.user_store),
            shared_dir=_str(e, "SHARED_DIR", cls.shared_dir),
            user_salt=_str(e, "USER_SALT", cls.user_salt),
            signal_ttl=_float(e, "SIGNAL_TTL", cls.signal_ttl, 1.0, 365 * 86400.0),
            frequency_cap=_str(e, "FREQUENCY_CAP", cls.frequency_cap),
            offer_budgets=_str(e, "OFFER_BUDGETS", cls.offer_budgets),
            max_users=_int(e, "MAX_USERS", cls.max_users, 1, 10**9),
            api_keys=_str(e, "API_KEYS", cls.api_keys),
            rate_limit=_float(e, "RATE_LIMIT", cls.rate_limit, 0.0, 1e9),
            reward_rate_limit=_float(e, "REWARD_RATE_LIMIT", cls.reward_rate_limit, 0.0, 1e9),
            request_timeout=_float(e, "REQUEST_TIMEOUT", cls.request_timeout, 0.1, 3600.0),
            max_connections=_int(e, "MAX_CONNECTIONS", cls.max_connections, 1, 10**6),
            experiment=_str(e, "EXPERIMENT", cls.experiment),
            mode=_choice(e, "MODE", cls.mode, ("online", "apprentice")),
            shadow_policy=_str(e, "SHADOW_POLICY", cls.shadow_policy),
            lgbm_arm=_str(e, "LGBM_ARM", cls.lgbm_arm),
            holdout=_float(e, "HOLDOUT", cls.holdout, 0.0, 0.5),
            holdout_treatment=_choice(e, "HOLDOUT_TREATMENT", cls.holdout_treatment,
                                      ("none", "default")),
            safe_delta=_float(e, "SAFE_DELTA", cls.safe_delta, 0.0, 1e9),
            explore_budget=_int(e, "EXPLORE_BUDGET", cls.explore_budget, 0, 10**9),
            protected=_str(e, "PROTECTED", cls.protected),
            arm_guard_margin=_float(e, "ARM_GUARD_MARGIN", cls.arm_guard_margin, 0.0, 1e9),
            arm_guard_baseline=_str(e, "ARM_GUARD_BASELINE", cls.arm_guard_baseline),
            arm_guard_min=_int(e, "ARM_GUARD_MIN", cls.arm_guard_min, 10, 10**9),
        )
        s.validate()
        return s

    def validate(self) -> None:
        """Cross-field checks, and that the policy spec parses."""
        from bandit.policy_spec import PolicySpec

        if self.reward_min >= self.reward_max:
            raise ConfigError(f"{PREFIX}REWARD_MIN ({self.reward_min}) must be below "
                              f"{PREFIX}REWARD_MAX ({self.reward_max})")
        try:
            if self.policy.startswith("lgbm:"):
                from bandit.lgbm_policy import parse_lgbm_policy

                parse_lgbm_policy(self.policy)
            else:
                PolicySpec.parse(self.policy)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}POLICY={self.policy!r}: {exc}") from None
        try:
            self.weights()
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}REWARD_WEIGHTS={self.reward_weights!r}: {exc}") \
                from None
        from bandit.server.guard import parse_keys
        from bandit.userstore import Cap, parse_budgets

        try:
            parse_keys(self.api_keys)
        except ValueError as exc:  # the message never repeats a key hash
            raise ConfigError(f"{PREFIX}API_KEYS: {exc}") from None

        for name, check in (("FREQUENCY_CAP", lambda: self.frequency_cap and
                             Cap.parse(self.frequency_cap)),
                            ("OFFER_BUDGETS", lambda: parse_budgets(self.offer_budgets))):
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}{name}: {exc}") from None
        if not (self.user_store in ("auto", "memory", "none") or
                self.user_store.startswith(("sqlite:", "redis://", "rediss://", "unix://"))):
            raise ConfigError(f"{PREFIX}USER_STORE={self.user_store!r}: expected auto, "
                              "memory, sqlite:PATH, redis://HOST:PORT[/DB] or none")
        if self.experiment:
            from bandit.experiments import Experiment

            try:
                exp = Experiment.parse(self.experiment)
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}EXPERIMENT={self.experiment!r}: {exc}") from None
            if any(a.name == "lgbm" for a in exp.arms) and not self.lgbm_arm:
                raise ConfigError(f"{PREFIX}EXPERIMENT has an lgbm arm: set {PREFIX}LGBM_ARM "
                                  "to a directory written by bandit-replay train")
        if self.shadow_policy and not (self.shadow_policy.startswith("vw:") or
                                       self.shadow_policy in ("popularity", "uniform",
                                                              "fixed")):
            raise ConfigError(f"{PREFIX}SHADOW_POLICY={self.shadow_policy!r}: expected "
                              "vw:PATH, popularity, uniform or fixed")
        if self.event_sink == "kafka" and not self.kafka_bootstrap:
            raise ConfigError(f"{PREFIX}EVENT_SINK=kafka needs {PREFIX}KAFKA_BOOTSTRAP")

    def user_store_kind(self) -> str:
        """The user store ``auto`` stands for: one SQLite file in the shared directory
        when several workers share it (caps and budgets hold across them), else memory."""
        if self.user_store != "auto":
            return self.user_store
        if self.shared_dir and self.workers > 1:
            return f"sqlite:{Path(self.shared_dir) / 'users.sqlite'}"
        return "memory"

    def weights(self) -> dict[str, float] | None:
        """``click=1,conversion=5`` → weights per reward kind (None: no weighting)."""
        if not self.reward_weights.strip():
            return None
        out: dict[str, float] = {}
        for part in self.reward_weights.split(","):
            kind, sep, value = part.partition("=")
            if not sep or not kind.strip():
                raise ValueError(f"expected KIND=WEIGHT, got {part!r}")
            try:
                w = float(value)
            except ValueError:
                raise ValueError(f"weight of {kind.strip()!r} is not a number") from None
            if w != w or w in (float("inf"), float("-inf")):
                raise ValueError(f"weight of {kind.strip()!r} must be finite")
            out[kind.strip()] = w
        return out

    def ranking_options(self) -> RankingOptions:
        from bandit.policy import RankingOptions

        return RankingOptions(self.warmup_events, self.popularity_epsilon,
                              self.new_offer_impressions, self.new_offer_floor,
                              self.diversity, self.diversity_feature, self.safe_delta)

    @property
    def sink_kind(self) -> str:
        """The event sink actually used: ``auto`` means Kafka when a bootstrap is set."""
        if self.event_sink == "auto":
            return "kafka" if self.kafka_bootstrap else "file"
        return self.event_sink

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("decisions") == "offers.decisions"``."""
        return f"{self.topic_prefix}{name}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by CLI flags), validated again."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        s = replace(self, **changes)
        s.validate()
        return s

    def to_env(self) -> dict[str, str]:
        """The ``BANDIT_*`` variables that reproduce these settings (for worker processes)."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
