"""The user's constraints on a decision: caps and budgets remove offers, signals join
the context, protected segments and the exploration budget turn exploration off."""

from __future__ import annotations

import time
from dataclasses import replace

from bandit.config.settings import Settings
from bandit.core.adjustments import category_of
from bandit.core.errors import Unprocessable
from bandit.core.types import DecideRequest, Decision
from bandit.stores.userstore import UserStore


class UserConstraints:
    """Applies and records what the user store knows of a user (``request.user_id`` is
    already the user's salted hash). Without a user store, the exploration budget is
    counted in this worker's memory."""

    def __init__(self, settings: Settings, users: UserStore | None) -> None:
        self.settings = settings
        self.users = users
        self.protected = frozenset(p.strip() for p in settings.protected.split(",")
                                   if p.strip())
        self.limits_exploration = bool(self.protected) or settings.explore_budget > 0
        self.budgets = users is not None and bool(settings.offer_budgets)  # need the store
        self._explored: dict[str, list[float]] = {}

    def apply(self, request: DecideRequest) -> DecideRequest:
        """The request without the user's capped (or out-of-budget) offers, with the
        user's signals in its context."""
        users = self.users
        if users is None or (request.user_id is None and not self.budgets):
            return request
        user, now = request.user_id, time.time()
        capped = users.capped(user, [o.id for o in request.offers], now)
        offers = request.offers
        if capped:
            offers = tuple(o for o in offers if o.id not in capped)
            if not offers:
                raise Unprocessable("every eligible offer is capped for this user or out of "
                                    "budget", code="NoEligibleOffer", field="offers")
        context = request.context
        if user is not None:
            sig = users.signals(user, now)
            if sig:
                context = {**context, **sig}
        return replace(request, offers=offers, context=context,
                       slots=min(request.slots, len(offers)))

    def limit_exploration(self, request: DecideRequest) -> DecideRequest:
        """The request, not exploring when the user may not be explored on."""
        if request.explore and self.limits_exploration and not self.may_explore(request):
            return replace(request, explore=False)
        return request

    def may_explore(self, request: DecideRequest) -> bool:
        """Safe exploration: never for protected segments, and at most
        ``BANDIT_EXPLORE_BUDGET`` explored decisions per user within the signal TTL
        (counted in the user store, so across the workers that share it)."""
        if self.protected and any(key in feats for feats in request.context.values()
                                  for key in self.protected):
            return False
        budget = self.settings.explore_budget
        if budget and request.user_id is not None and self.users is not None:
            since = time.time() - self.settings.signal_ttl
            return self.users.explored(request.user_id, since) < budget
        if budget and request.user_id is not None:
            now = time.time()
            recent = [t for t in self._explored.get(request.user_id, [])
                      if t > now - self.settings.signal_ttl]
            self._explored[request.user_id] = recent
            if len(self._explored) > self.settings.max_users:
                self._explored.clear()  # bounded; forgetting only allows exploration again
            if len(recent) >= budget:
                return False
        return True

    def record_shown(self, request: DecideRequest, decision: Decision) -> None:
        """The shown offers count towards the user's caps and the offers' budgets."""
        if self.users is not None and (request.user_id is not None or
                                       self.settings.offer_budgets):
            name = self.settings.diversity_feature
            shown = [(request.offers[i].id, category_of(request.offers[i].features, name))
                     for i in decision.order[:decision.slots]]
            self.users.record_decision(request.user_id, request.event_id, shown, time.time())

    def record_explored(self, request: DecideRequest, decision: Decision) -> None:
        """The budget counts decisions made at random (any shown probability below 1)."""
        if (self.settings.explore_budget and request.user_id is not None and request.explore
                and decision.slots and min(decision.probabilities[:decision.slots]) < 1.0):
            if self.users is not None:  # shared by the workers (unless memory, one worker)
                self.users.record_explored(request.user_id, time.time())
            else:
                self._explored.setdefault(request.user_id, []).append(time.time())
