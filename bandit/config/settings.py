"""Service configuration: one frozen dataclass built from ``BANDIT_*`` variables.

Every field has a default that works on one machine (``make demo``); a bad value
stops start-up with a :class:`~bandit.core.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bandit.core.errors import ConfigError

if TYPE_CHECKING:
    from bandit.core.experiments import Experiment
    from bandit.core.policy import RankingOptions
    from bandit.core.policy_spec import PolicySpec
    from bandit.stores.userstore import Cap
    from bandit.value.heads import Exploration
    from bandit.value.objective import Objective
    from bandit.value.value_settings import ConstraintSpec

PREFIX = "BANDIT_"


_UNSET = object()
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _num(default: float, lo: float, hi: float) -> Any:
    """A numeric field and the closed range its variable must fall in."""
    return field(default=default, metadata={"bounds": (lo, hi)})


def _one_of(default: str, choices: tuple[str, ...]) -> Any:
    """A string field that must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def _kind(f: Field[Any]) -> type:
    return _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]


def _read(env: Mapping[str, str], f: Field[Any]) -> Any:
    """The value of field ``f`` from ``BANDIT_<NAME>``, converted to the field's type
    (its bounds are checked by :meth:`Settings.validate`)."""
    name = PREFIX + f.name.upper()
    raw = env.get(name)
    if raw is None or raw == "":
        return _UNSET
    kind = _kind(f)
    if kind is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} must be true or false")
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None


def _check(f: Field[Any], value: Any) -> None:
    """``value`` is of the field's type and within its declared bounds or choices."""
    name = PREFIX + f.name.upper()
    kind = _kind(f)
    value = float(value) if kind is float and type(value) is int else value
    if type(value) is not kind:
        raise ConfigError(f"{name}={value!r} must be of type {kind.__name__}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    bounds = f.metadata.get("bounds")
    if bounds is None:
        return
    lo, hi = bounds
    number = cast(float, value)
    if kind is int and not lo <= value <= hi:
        raise ConfigError(f"{name}={value} must be between {lo} and {hi}")
    if kind is float and (not math.isfinite(number) or not lo <= number <= hi):
        raise ConfigError(f"{name}={value} must be a finite number in [{lo}, {hi}]")


# The fields by concern, each group with the parsed forms of its structured values
# (parsed once; Settings.validate parses each). Settings inherits them all: its field
# order is that of its bases, last first.

@dataclass(frozen=True)
class _Serving:
    host: str = "127.0.0.1"
    port: int = _num(8080, 0, 65535)
    workers: int = _num(1, 1, 256)
    # see README, learning quality
    policy: str = "squarecb:gamma=10,lr=0.5,normalized=0,power_t=0"
    seed: int = _num(0, 0, 2**31 - 1)
    # the hot routes' handlers of one event-loop iteration run back to back
    # (bandit.server.batching); false: each in its request's task
    batch_handlers: bool = True

    @cached_property
    def policy_spec(self) -> PolicySpec | None:
        """The VW policy of ``BANDIT_POLICY`` (None when it names a LightGBM model)."""
        from bandit.core.policy_spec import PolicySpec

        return None if self.policy.startswith("lgbm:") else PolicySpec.parse(self.policy)

    @cached_property
    def lgbm_policy(self) -> tuple[str, float] | None:
        """``lgbm:DIR[,epsilon=E]`` → (DIR, E); None for a VW policy."""
        if not self.policy.startswith("lgbm:"):
            return None
        from bandit.core.lgbm_policy import parse_lgbm_policy

        return parse_lgbm_policy(self.policy)


@dataclass(frozen=True)
class _Events:
    # storage
    model_dir: str = "var/models"
    model_poll: float = _num(0.5, 0.05, 3600.0)
    model_keep: int = _num(20, 1, 100000)
    event_sink: str = _one_of("auto", ("auto", "file", "kafka", "none"))
    event_dir: str = "var/events"
    spool_dir: str = "var/spool"
    # kafka
    kafka_bootstrap: str = ""
    topic_prefix: str = "offers."
    partitions: int = _num(4, 1, 1024)
    # of the batches every producer of the service sends
    kafka_compression: str = _one_of("lz4", ("none", "gzip", "snappy", "lz4", "zstd"))
    # where a server's spool is shipped from: a child process, or a thread of the server
    shipper: str = _one_of("process", ("process", "thread"))
    # offline evaluations (see bandit.evaluation.evaluation_jobs): their joined logs
    evaluation_logs: str = ""  # DSJSON file/dir or kafka://host:port/topic ("": the joined topic)

    @property
    def sink_kind(self) -> str:
        """The event sink actually used: ``auto`` means Kafka when a bootstrap is set."""
        if self.event_sink == "auto":
            return "kafka" if self.kafka_bootstrap else "file"
        return self.event_sink

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("decisions") == "offers.decisions"``."""
        return f"{self.topic_prefix}{name}"


@dataclass(frozen=True)
class _Learner:
    reward_wait: float = _num(600.0, 0.0, 30 * 86400.0)
    reward_function: str = _one_of("earliest", ("earliest", "sum", "max", "last", "average"))
    default_reward: float = _num(0.0, -1e9, 1e9)
    checkpoint_events: int = _num(50000, 1, 10**9)
    checkpoint_seconds: float = _num(5.0, 0.01, 86400.0)
    # a young model is published sooner: first after this many events learned, then
    # whenever the events learned since the last model reach those it had (0 = off)
    checkpoint_first_events: int = _num(32, 0, 10**9)
    learner_process: bool = True
    # a server learns the first reward of its own one-slot decisions at once, on the
    # model it serves, until the learner's next model (bandit.server.instant)
    instant_learning: bool = True
    instant_memory: int = _num(20000, 1, 10**7)  # decisions and updates kept per worker
    standardize: bool = True  # numeric features standardised by the model (bandit.core.scaling)
    guard_margin: float = _num(0.0, 0.0, 1e9)
    long_wait: float = _num(0.0, 0.0, 90 * 86400.0)
    long_weight: float = _num(1.0, 0.0, 1e6)
    attribution: str = _one_of("last", ("last", "split"))
    guard_holdout: float = _num(0.1, 0.001, 0.5)


@dataclass(frozen=True)
class _Limits:
    """Request limits."""

    max_offers: int = _num(50, 1, 10000)
    max_body_bytes: int = _num(1 << 20, 1024, 1 << 30)
    max_id_bytes: int = _num(256, 8, 65536)
    max_features: int = _num(256, 1, 100000)
    max_name_bytes: int = _num(256, 8, 65536)
    max_depth: int = _num(4, 1, 32)
    max_slots: int = _num(3, 1, 50)
    reward_min: float = _num(-1.0, -1e12, 1e12)
    reward_max: float = _num(1.0, -1e12, 1e12)


@dataclass(frozen=True)
class _Ranking:
    """Cold start, diversity, objectives; safe exploration."""

    warmup_events: int = _num(0, 0, 10**12)
    popularity_epsilon: float = _num(0.2, 0.0, 1.0)
    new_offer_impressions: int = _num(100, 0, 10**12)
    new_offer_floor: float = _num(0.02, 0.0, 0.5)
    diversity: float = _num(0.0, 0.0, 1.0)
    diversity_feature: str = "category"
    reward_weights: str = ""
    safe_delta: float = _num(0.0, 0.0, 1e9)

    def weights(self) -> dict[str, float] | None:
        """``click=1,conversion=5`` → weights per reward kind (None: no weighting)."""
        return self._weights

    @cached_property
    def _weights(self) -> dict[str, float] | None:
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
            if not math.isfinite(w):
                raise ValueError(f"weight of {kind.strip()!r} must be finite")
            out[kind.strip()] = w
        return out

    def ranking_options(self) -> RankingOptions:
        from bandit.core.policy import RankingOptions

        return RankingOptions(self.warmup_events, self.popularity_epsilon,
                              self.new_offer_impressions, self.new_offer_floor,
                              self.diversity, self.diversity_feature, self.safe_delta)


@dataclass(frozen=True)
class _Users:
    """Signals, caps and budgets (see bandit.stores.userstore)."""

    user_store: str = "auto"
    shared_dir: str = ""  # the host's workers share state here (bandit-serve makes one)
    user_salt: str = ""
    signal_ttl: float = _num(1800.0, 1.0, 365 * 86400.0)
    frequency_cap: str = ""
    offer_budgets: str = ""
    max_users: int = _num(100_000, 1, 10**9)

    @cached_property
    def cap(self) -> Cap | None:
        """The per-user frequency cap (None: none)."""
        from bandit.stores.userstore import Cap

        return Cap.parse(self.frequency_cap) if self.frequency_cap else None

    @cached_property
    def budgets(self) -> dict[str, Cap]:
        """Per-offer impression budgets."""
        from bandit.stores.userstore import parse_budgets

        return parse_budgets(self.offer_budgets)


@dataclass(frozen=True)
class _Access:
    """Keys and abuse (see bandit.server.guard)."""

    api_keys: str = ""
    rate_limit: float = _num(0.0, 0.0, 1e9)
    reward_rate_limit: float = _num(0.0, 0.0, 1e9)
    request_timeout: float = _num(10.0, 0.1, 3600.0)
    max_connections: int = _num(2048, 1, 10**6)

    @cached_property
    def keys(self) -> list[tuple[bytes, frozenset[str]]]:
        """``BANDIT_API_KEYS`` as (SHA-256 digest, scopes) pairs."""
        from bandit.config.apikeys import parse_keys

        return parse_keys(self.api_keys)


@dataclass(frozen=True)
class _Experiments:
    """Experiments and rollout (see bandit.core.experiments), causal value and safe
    exploration."""

    experiment: str = ""
    mode: str = _one_of("online", ("online", "apprentice"))
    shadow_policy: str = ""
    lgbm_arm: str = ""
    holdout: float = _num(0.0, 0.0, 0.5)
    holdout_treatment: str = _one_of("none", ("none", "default"))
    explore_budget: int = _num(0, 0, 10**9)
    protected: str = ""
    arm_guard_margin: float = _num(0.0, 0.0, 1e9)
    arm_guard_baseline: str = "popularity"
    arm_guard_min: int = _num(500, 10, 10**9)

    @cached_property
    def experiment_spec(self) -> Experiment | None:
        """The A/B split of ``BANDIT_EXPERIMENT`` (None: no experiment)."""
        from bandit.core.experiments import Experiment

        return Experiment.parse(self.experiment) if self.experiment else None

    def _validate_arm_guard(self) -> None:
        """The arm guard's baseline is an arm kind other than ``model``; when the guard is
        on, the experiment has both arms (else it would never compare anything)."""
        from bandit.core.experiments import ARM_KINDS

        kinds = [k for k in ARM_KINDS if k != "model"]
        if self.arm_guard_baseline not in kinds:
            raise ConfigError(f"{PREFIX}ARM_GUARD_BASELINE={self.arm_guard_baseline!r}: "
                              f"expected one of {', '.join(kinds)}")
        if self.arm_guard_margin > 0:
            exp = self.experiment_spec
            arms = {a.name for a in exp.arms} if exp is not None else set()
            if not {"model", self.arm_guard_baseline} <= arms:
                raise ConfigError(f"{PREFIX}ARM_GUARD_MARGIN is on: {PREFIX}EXPERIMENT needs "
                                  f"a model arm and a {self.arm_guard_baseline} arm")


@dataclass(frozen=True)
class _Value:
    """Value-aware ranking (see bandit.value and docs/value.md): the heads learned, the
    objective combining them, the offer catalogue and the constraints at inference."""

    objective: str = ""  # e.g. "click + 5 * conversion * payout" ("": value-aware off)
    heads: str = "click,conversion,value"  # the reward kinds learned as heads
    value_exploration: str = "epsilon:0.1"  # epsilon:E, softmax:L, squarecb:G or greedy
    # the offer catalogue: a SQLite file, a host's ("": MODEL_DIR/catalogue.sqlite), or
    # redis://HOST:PORT/DB, every server's
    catalogue: str = ""
    min_margin: str = ""  # offers with payout − cost below it are never shown
    share_cap: str = ""  # advertiser:0.3/1000: at most 30% of the last 1000 impressions
    daily_budgets: str = ""  # acme=100,globex=50: daily spend per advertiser, paced
    # where the daily budgets' spend is kept: a SQLite file shared by the host's workers
    # and kept across restarts ("": MODEL_DIR/budgets.sqlite), or "memory" (per worker)
    budget_ledger: str = ""
    # new catalogue offers borrow their neighbours' predictions (text embeddings):
    # auto = when the embeddings extra is installed
    cold_start: str = _one_of("auto", ("auto", "on", "off"))

    @cached_property
    def head_kinds(self) -> tuple[str, ...]:
        """The reward kinds of ``BANDIT_HEADS``, one head each."""
        from bandit.value.value_settings import parse_heads

        return parse_heads(self.heads)

    @cached_property
    def objective_spec(self) -> Objective | None:
        """The parsed ``BANDIT_OBJECTIVE`` (None: value-aware ranking is off)."""
        from bandit.value.value_settings import parse_objective

        return parse_objective(self.objective, self.head_kinds) if self.objective.strip() \
            else None

    @cached_property
    def exploration_spec(self) -> Exploration:
        from bandit.value.heads import Exploration

        return Exploration.parse(self.value_exploration)

    @cached_property
    def constraint_spec(self) -> ConstraintSpec:
        """The constraints at inference (minimum margin, share cap, daily budgets)."""
        from bandit.value.value_settings import ConstraintSpec

        return ConstraintSpec.parse(self.min_margin, self.share_cap, self.daily_budgets)

    def _constraints(self, name: str) -> ConstraintSpec:
        """The constraint of one variable alone (so an error names that variable)."""
        from bandit.value.value_settings import ConstraintSpec

        given = {"min_margin": "", "share_cap": "", "daily_budgets": "",
                 name: getattr(self, name)}
        return ConstraintSpec.parse(given["min_margin"], given["share_cap"],
                                    given["daily_budgets"])

    @property
    def cold_start_on(self) -> bool:
        """Whether decisions use cold-start priors (``auto``: the extra is installed)."""
        if self.cold_start == "auto":
            import importlib.util

            return importlib.util.find_spec("wordllama") is not None
        return self.cold_start == "on"

    def catalogue_path(self, model_dir: str) -> Path:
        return Path(self.catalogue) if self.catalogue else Path(model_dir) / "catalogue.sqlite"

    def catalogue_source(self, model_dir: str) -> str | Path:
        """Where the catalogue is: a ``redis://`` URL, or its SQLite file."""
        from bandit.stores.redis_url import is_redis

        return self.catalogue if is_redis(self.catalogue) else self.catalogue_path(model_dir)

    def budget_ledger_path(self, model_dir: str) -> Path | None:
        """The daily budgets' ledger file (None: each worker's memory)."""
        from bandit.value.spend_ledger import LEDGER_FILE

        if self.budget_ledger.strip() == "memory":
            return None
        return Path(self.budget_ledger) if self.budget_ledger.strip() \
            else Path(model_dir) / LEDGER_FILE


@dataclass(frozen=True)
class Settings(_Value, _Experiments, _Access, _Users, _Ranking, _Limits, _Learner, _Events,
               _Serving):
    """All runtime configuration. Field ``foo_bar`` is read from ``BANDIT_FOO_BAR``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every field from its ``BANDIT_*`` variable (unset or empty: the default),
        check its type and declared bounds, then the cross-field rules."""
        e: Mapping[str, str] = os.environ if env is None else env
        values = {f.name: _read(e, f) for f in fields(cls)}
        s = cls(**{k: v for k, v in values.items() if v is not _UNSET})
        s.validate()
        return s

    def validate(self) -> None:
        """Every field within its declared bounds, every structured value parsed (the
        parsed forms below are what the service uses), and the cross-field rules."""
        for f in fields(self):
            _check(f, getattr(self, f.name))
        if self.reward_min >= self.reward_max:
            raise ConfigError(f"{PREFIX}REWARD_MIN ({self.reward_min}) must be below "
                              f"{PREFIX}REWARD_MAX ({self.reward_max})")
        for name, parsed in (("POLICY", lambda: (self.policy_spec, self.lgbm_policy)),
                             ("REWARD_WEIGHTS", self.weights),
                             ("API_KEYS", lambda: self.keys),
                             ("FREQUENCY_CAP", lambda: self.cap),
                             ("OFFER_BUDGETS", lambda: self.budgets),
                             ("EXPERIMENT", lambda: self.experiment_spec),
                             ("HEADS", lambda: self.head_kinds),
                             ("OBJECTIVE", lambda: self.objective_spec),
                             ("VALUE_EXPLORATION", lambda: self.exploration_spec),
                             ("MIN_MARGIN", lambda: self._constraints("min_margin")),
                             ("SHARE_CAP", lambda: self._constraints("share_cap")),
                             ("DAILY_BUDGETS", lambda: self._constraints("daily_budgets"))):
            try:
                parsed()
            except ValueError as exc:  # API_KEYS: the message never repeats a key hash
                shown = "" if name == "API_KEYS" else f"={getattr(self, name.lower())!r}"
                raise ConfigError(f"{PREFIX}{name}{shown}: {exc}") from None
        if not (self.user_store in ("auto", "memory", "none") or
                self.user_store.startswith(("sqlite:", "redis://", "rediss://", "unix://"))):
            raise ConfigError(f"{PREFIX}USER_STORE={self.user_store!r}: expected auto, "
                              "memory, sqlite:PATH, redis://HOST:PORT[/DB] or none")
        exp = self.experiment_spec
        if exp is not None:
            if any(a.name == "lgbm" for a in exp.arms) and not self.lgbm_arm:
                raise ConfigError(f"{PREFIX}EXPERIMENT has an lgbm arm: set {PREFIX}LGBM_ARM "
                                  "to a directory written by bandit-replay train")
        self._validate_arm_guard()
        if self.shadow_policy and not (self.shadow_policy.startswith("vw:") or
                                       self.shadow_policy in ("popularity", "uniform",
                                                              "fixed")):
            raise ConfigError(f"{PREFIX}SHADOW_POLICY={self.shadow_policy!r}: expected "
                              "vw:PATH, popularity, uniform or fixed")
        if self.cold_start == "on" and not self.cold_start_on:
            raise ConfigError(f"{PREFIX}COLD_START=on needs the embeddings extra: "
                              "pip install 'offer-bandit[embeddings]'")
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
