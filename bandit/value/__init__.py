"""Value-aware ranking: per-kind heads, objectives, calibration, constraints, the offer
catalogue and cold-start embeddings (see docs/value.md)."""
