"""offer-bandit: a self-hosted contextual-bandit service for offer recommendation."""

__version__ = "0.1.0"
