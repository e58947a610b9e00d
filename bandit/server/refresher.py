"""Keeps a server's model and live configuration those of the model store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bandit.config.loop_admin import load_config
from bandit.config.loop_config import LoopConfig
from bandit.config.settings import Settings
from bandit.core.offerstats import OfferStats
from bandit.core.policy import Policy
from bandit.core.policy_spec import PolicySpec
from bandit.core.scaling import Standardizer
from bandit.core.vw_adapter import VWModel
from bandit.server.instant import InstantLearner, Update
from bandit.server.metrics import Metrics
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError

log = logging.getLogger("bandit.server")


@dataclass
class Refresher:
    """The served model's manifest and the live configuration (``loop``), each read
    again when the store's copy changes. A model that fails to load or verify is refused once and
    the previous one keeps serving. With rewards learned at once (``instant``), a new
    model is served with the updates it lacks applied again."""

    settings: Settings
    policy: Policy
    metrics: Metrics
    store: ModelStore | None
    manifest: Manifest | None
    instant: InstantLearner | None = None
    serving_pinned: bool = False  # the served model is a pinned one (a rollback)
    loop: LoopConfig = field(init=False)
    _config_stamp: tuple[int, int] | None = field(init=False)
    _refused: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.loop = load_config(self.store, self.settings)
        self._config_stamp = self._stamp()
        # a server that starts on a pinned model (a rollback) serves it as it is
        self.serving_pinned = self.manifest is not None and self.pinned()

    def _stamp(self) -> tuple[int, int] | None:
        if self.store is None:
            return None
        try:
            st = self.store.config_path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def refresh_config(self, force: bool = False) -> bool:
        """Read the live configuration again if its file changed; True if it did."""
        stamp = self._stamp()
        if not force and stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        self.loop = load_config(self.store, self.settings)
        return True

    def pinned(self) -> bool:
        if self.store is None:
            return False
        try:
            return self.store.pinned() is not None
        except ModelStoreError:
            return False

    async def refresh_model(self) -> bool:
        """Load the store's current model if it is new; True when a swap happened.

        Loading and checksum verification run in a thread; the swap itself is one
        reference assignment on the event loop, so no request sees a half-loaded model.
        """
        if self.store is None:
            return False
        try:
            manifest = self.store.serving()  # a pinned version wins (rollback)
        except ModelStoreError as exc:
            self._refuse(("manifest", str(exc)), f"manifest refused: {exc}")
            return False
        if manifest is None or manifest.version == self.policy.version:
            return False
        key = (manifest.version, manifest.sha256)
        if key in self._refused:
            return False
        instant = self.instant
        updates: list[Update] = [] if instant is None else self._unread(instant, manifest)
        seq = 0 if instant is None else instant.last_seq
        try:
            model = await asyncio.to_thread(self._load, manifest, updates)
        except ModelStoreError as exc:
            self._refuse(key, f"model {manifest.version} refused, keeping "
                              f"{self.policy.version}: {exc}")
            return False
        if instant is not None:  # rewards learned at once while it loaded
            instant.apply(instant.since(seq), model)
            instant.swapped()
        self._swap_in(manifest, model)
        return True

    def _unread(self, instant: InstantLearner, manifest: Manifest) -> list[Update]:
        """The updates learned at once that ``manifest``'s model lacks; none for a
        pinned model (a rollback serves the model as it is, and nothing is learned on
        it until the pin goes)."""
        self.serving_pinned = self.pinned()
        if self.serving_pinned:
            instant.clear()
            return []
        ck = Checkpoint.of(manifest)
        return instant.unread(ck.rewards_through(), ck.rewards_pending())

    def _load(self, manifest: Manifest, updates: list[Update]) -> VWModel:
        """Load (in a thread) a model to serve, with the updates it lacks applied."""
        assert self.store is not None
        model = self.store.load(manifest)
        self.standardizing(model, self.store.feature_scale(manifest))
        if updates and self.instant is not None:
            self.instant.apply(updates, model)
        return model

    def standardizing(self, model: VWModel, scale: dict[str, Any] | None = None) -> None:
        """A model that learns rewards at once standardises as the learner goes on
        learning it (bandit.core.scaling): a model of the learner's with the snapshot of the
        statistics it was saved with (the one the learner learns on with after that
        save, not the one before it), a fresh or reset one with running statistics
        frozen at the young-model points."""
        if not self.settings.standardize or self.instant is None:
            return
        if scale:
            model.set_scale(Standardizer.restore(scale).current)
        elif not model.scale and model.standardizer is None:
            model.standardize(Standardizer())

    def _swap_in(self, manifest: Manifest, model: VWModel) -> None:
        previous = self.policy.version
        self.policy.swap(model, manifest.version,
                         OfferStats.restore(Checkpoint.of(manifest).offer_stats),
                         manifest.events_learned)
        self.manifest = manifest
        if manifest.policy != self.policy.name:  # new learning settings
            try:
                self.policy.spec = PolicySpec.parse(manifest.policy)
                self.policy.name = str(self.policy.spec)
            except ValueError:
                pass
        self.metrics.model_swaps.labels("ok").inc()
        self.metrics.set_model(manifest.version, self.policy.name, previous)
        log.info("serving model %s (was %s)", manifest.version, previous)

    def _refuse(self, key: tuple[str, str], message: str) -> None:
        if key not in self._refused:  # count and log each bad model once, not every poll
            self._refused.add(key)
            log.warning(message)
            self.metrics.model_swaps.labels("refused").inc()
