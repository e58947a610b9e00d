"""``bandit-replay train``: fit the LightGBM propensity (CTR/conversion) model that the
server can serve as ``BANDIT_POLICY=lgbm:DIR``.

Trained on the logged (context, shown offer, slot) → reward, with the same featurizer
as the replay reward models. ``--ips`` weights each row by 1/p (capped), which corrects
the exposure bias of the logging policy (offers it favoured are not over-learned).
Calibration is checked on cross-fitted predictions (no row scored by a model trained
on it): expected calibration error and AUC go into ``meta.json`` and the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from replay.logs import Logs
from replay.metrics import model_quality
from replay.reward_model import LGBMModel, cross_fit, design


def train(logs: Logs, out: str | Path, *, target: str = "reward", ips: bool = False,
          ips_cap: float = 50.0, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    if logs.n < 10:
        raise ValueError(f"only {logs.n} usable rows: too few to train on")
    y = logs.reward if target == "reward" else \
        logs.kinds.get(target, np.zeros(logs.n)).astype(np.float64)
    if target != "reward" and target not in logs.kinds:
        raise ValueError(f"no reward of kind {target!r} in the logs "
                         f"(kinds: {', '.join(sorted(logs.kinds)) or 'none'})")
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    rows = np.arange(logs.n)
    x = design(logs, rows, logs.chosen_action, logs.position)
    col = logs.context.shape[1] + logs.action_features.shape[1]
    weight = np.minimum(1.0 / logs.pscore, ips_cap) if ips else None
    model = LGBMModel(binary, seed=seed)
    import lightgbm as lgb

    params = {"objective": "binary" if binary else "regression", "learning_rate": 0.1,
              "num_leaves": 31, "min_data_in_leaf": 20, "verbosity": -1, "seed": seed,
              "deterministic": True, "num_threads": 2, "force_row_wise": True}
    data = lgb.Dataset(x, y, weight=weight, categorical_feature=[col])
    model.booster = lgb.train(params, data, num_boost_round=model.num_rounds)
    shadow = Logs(logs.event_ids, logs.candidates, logs.chosen, logs.position, logs.pscore,
                  y, logs.timestamp, logs.context, logs.action_features, logs.action_names)
    oof = cross_fit(shadow, "lgbm", folds, seed)
    quality = model_quality(y, oof.q_logged)
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(d / "model.txt"))
    meta = {"action_names": logs.action_names, "context_dim": int(logs.context.shape[1]),
            "action_dim": int(logs.action_features.shape[1]), "target": target,
            "binary": binary, "ips_weighted": ips, "rows": logs.n,
            "quality": {k: v for k, v in quality.items() if k != "curve"}}
    (d / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return meta
