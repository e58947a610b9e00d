"""Changing the loop while it runs: configuration, learning settings, the model, logs.

Everything goes through the model store, which every server worker and the learner
poll: ``config.json`` (see :mod:`bandit.config.loop_config`) and, when the served model is
replaced (reset, import, new learning settings), a new current model version that keeps
the learner's offsets and join state, named in the configuration's ``generation`` so
the learner adopts it and learns on from it.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bandit.config.learning_settings import arguments_of, spec_from_arguments
from bandit.config.loop_config import LearningSettings, LoopConfig
from bandit.config.settings import Settings
from bandit.core.errors import BadRequest, Conflict, NotFound
from bandit.core.events import utc_now
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError

MODEL_ENTRY, MANIFEST_ENTRY = "model.vw", "manifest.json"
SCALE_ENTRY = "feature_scale.json"  # the standardisation the model is served with


def load_config(store: ModelStore | None, settings: Settings) -> LoopConfig:
    """The stored configuration, or the one the settings give (also when unreadable)."""
    if store is not None:
        try:
            obj = store.read_config()
            if obj is not None:
                return LoopConfig.from_json(obj)
        except (ModelStoreError, ValueError):
            pass
    return LoopConfig.from_settings(settings)


def default_exploration(spec: PolicySpec) -> float:
    eps = spec.get("epsilon")
    return float(eps) if isinstance(eps, (int, float)) else 0.0


class LoopAdmin:
    """The operations behind Personalizer's configuration, model and logs routes."""

    def __init__(self, settings: Settings, store: ModelStore | None) -> None:
        self.s = settings
        self.store = store

    def _store(self) -> ModelStore:
        if self.store is None:
            raise Conflict("this server has no model store", code="OperationNotAllowed")
        return self.store

    def config(self) -> LoopConfig:
        return load_config(self.store, self.s)

    def _save(self, config: LoopConfig) -> LoopConfig:
        self._store().write_config(config.to_json())
        return config

    # -- service configuration ----------------------------------------------------------
    def update_service(self, body: Any) -> LoopConfig:
        return self._save(self.config().updated(body, utc_now()))

    # -- learning settings --------------------------------------------------------------
    def spec(self, config: LoopConfig | None = None) -> PolicySpec:
        config = config or self.config()
        if config.policy is not None:
            return spec_from_arguments(config.policy.arguments)
        return self.s.policy_spec or PolicySpec.parse(Settings.policy)

    def policy_json(self, config: LoopConfig | None = None) -> dict[str, str]:
        config = config or self.config()
        name = config.policy.name if config.policy is not None else "default"
        return {"name": name, "arguments": arguments_of(self.spec(config))}

    def update_policy(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict):
            raise BadRequest("learning settings must be {\"name\", \"arguments\"}",
                             code="InvalidPolicyContract")
        name, args = body.get("name"), body.get("arguments")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise BadRequest("name must be a string of 1 to 256 characters", field="name",
                             code="InvalidPolicyContract")
        if not isinstance(args, str) or len(args) > 1024:
            raise BadRequest("arguments must be a string of at most 1024 characters",
                             field="arguments", code="InvalidPolicyContract")
        spec = spec_from_arguments(args)
        config = replace(self.config(), policy=LearningSettings(name, args))
        return self._new_generation(config, spec, fresh=True)

    def apply_policy(self, name: str, arguments: str, model_path: str | None) -> None:
        """Serve learning settings and, when given, a model trained with them (an offline
        evaluation's): the learner learns on from that model."""
        spec = spec_from_arguments(arguments)
        config = replace(self.config(), policy=LearningSettings(name, arguments))
        if model_path is None:
            self._new_generation(config, spec, fresh=True)
            return
        try:
            model = VWModel.load(model_path)
        except Exception:  # VW raises plain RuntimeError on a file it cannot read
            raise NotFound("Model not found in evaluation.",
                           code="EvaluationModelNotFound") from None
        try:
            self._new_generation(config, spec, fresh=False, model=model)
        finally:
            model.close()

    def reset_policy(self) -> dict[str, str]:
        config = replace(self.config(), policy=None)
        return self._new_generation(config, self.spec(config), fresh=True)

    def _new_generation(self, config: LoopConfig, spec: PolicySpec, *, fresh: bool,
                        model: VWModel | None = None,
                        feature_scale: dict[str, Any] | None = None) -> dict[str, str]:
        """Serve a new model (fresh with ``spec``, or ``model``) and tell the learner."""
        store = self._store()
        owned = model is None
        model = model or VWModel(spec.vw_args(self.s.seed))
        try:
            manifest = store.replace_model(model, str(spec), feature_scale=feature_scale)
        finally:
            if owned:
                model.close()
        self._save(replace(config, generation=config.generation + 1,
                           generation_version=manifest.version, generation_at=utc_now()))
        return self.policy_json(config)

    # -- model --------------------------------------------------------------------------
    def export_model(self, signed: bool) -> bytes:
        """The served model file; ``signed``: a zip of it with its manifest (sha256)."""
        store = self._store()
        manifest = store.serving()
        if manifest is None:
            raise NotFound("no model has been published yet", code="ResourceNotFound")
        try:
            data = store.verify(manifest).read_bytes()
        except ModelStoreError as exc:
            raise NotFound(str(exc), code="ModelDownloadFailed") from None
        if not signed:
            return data
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "policy": manifest.policy,
                "version": manifest.version, "created_at": manifest.created_at}
        try:
            scale = orjson.dumps(store.feature_scale(manifest)) \
                if "feature_scale" in manifest.extra else b""
        except ModelStoreError as exc:
            raise NotFound(str(exc), code="ModelDownloadFailed") from None
        if scale:
            meta["feature_scale_sha256"] = hashlib.sha256(scale).hexdigest()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MODEL_ENTRY, data)
            z.writestr(MANIFEST_ENTRY, orjson.dumps(meta))
            if scale:
                z.writestr(SCALE_ENTRY, scale)
        return buf.getvalue()

    def import_model(self, body: bytes) -> None:
        """Serve an exported model: the zip of ``GET model?signed=true`` (its sha256 is
        checked) or a bare VW model file; either must load as a VW contextual bandit."""
        data, policy, scale = _unpack(body)
        with tempfile.TemporaryDirectory(prefix="bandit-import-") as tmp:
            path = Path(tmp) / MODEL_ENTRY
            path.write_bytes(data)
            try:
                model = VWModel.load(path)
            except Exception:  # VW raises plain RuntimeError on a file it cannot read
                raise BadRequest("the model file is not a VW model this service can load",
                                 code="InvalidModelImportFormat") from None
            try:
                if "cb_explore_adf" not in model.args_text():
                    raise BadRequest("the model is not a VW --cb_explore_adf model",
                                     code="InvalidModelImportFormat")
                config = self.config()
                spec = _policy_or(policy, self.spec(config))
                self._new_generation(config, spec, fresh=False, model=model,
                                     feature_scale=scale)
            finally:
                model.close()

    def reset_model(self) -> None:
        config = self.config()
        self._new_generation(config, self.spec(config), fresh=True)

    def model_properties(self) -> dict[str, str]:
        store = self._store()
        current = store.serving()
        config = self.config()
        if current is None:
            raise NotFound("no model has been published yet", code="ResourceNotFound")
        versions = store.versions()  # the first version since the last reset or import
        since = [m for m in versions if config.generation_version is None or
                 m.version >= config.generation_version]
        created = since[0].created_at if since else current.created_at
        return {"creationTime": created, "lastModifiedTime": current.created_at}

    # -- logs -----------------------------------------------------------------------------
    def log_properties(self) -> dict[str, Any]:
        """The date range of the decisions the learner has joined (and not deleted)."""
        store = self._store()
        manifest = store.current()
        config = self.config()
        rng = _log_range(manifest)
        if rng is None:
            raise NotFound("no logs yet: the learner has joined no decision",
                             code="LogsPropertiesNotFound")
        start, end = rng
        cleared = config.logs_cleared_at
        if cleared is not None and cleared > start:
            start = cleared
            if cleared > end:
                raise NotFound("no logs since they were deleted",
                                 code="LogsPropertiesNotFound")
        return {"dateRange": {"from": start, "to": end}}

    def delete_logs(self) -> None:
        self._save(replace(self.config(), logs_cleared_at=utc_now()))


def _log_range(manifest: Manifest | None) -> tuple[str, str] | None:
    return Checkpoint.of(manifest).log_range()


def _unpack(body: bytes) -> tuple[bytes, str | None, dict[str, Any] | None]:
    """The model file, its policy spec and its feature scale (from a signed archive)."""
    if not body:
        raise BadRequest("the request body must be a model file", code="InvalidModelImportFormat")
    if not zipfile.is_zipfile(io.BytesIO(body)):
        return body, None, None
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            data = z.read(MODEL_ENTRY)
            meta = orjson.loads(z.read(MANIFEST_ENTRY))
            raw_scale = z.read(SCALE_ENTRY) if SCALE_ENTRY in z.namelist() else None
    except (KeyError, zipfile.BadZipFile, orjson.JSONDecodeError, OSError):
        raise BadRequest(f"a model archive must hold {MODEL_ENTRY} and {MANIFEST_ENTRY}",
                         code="InvalidModelImportFormat") from None
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
        raise BadRequest("the model file does not match the checksum in its archive",
                         code="InvalidModelImportSignature")
    scale = None
    if raw_scale is not None or "feature_scale_sha256" in meta:
        if raw_scale is None or \
                meta.get("feature_scale_sha256") != hashlib.sha256(raw_scale).hexdigest():
            raise BadRequest(f"{SCALE_ENTRY} does not match the checksum in its archive",
                             code="InvalidModelImportSignature")
        try:
            scale = orjson.loads(raw_scale)
        except orjson.JSONDecodeError:
            scale = None
        if not isinstance(scale, dict):
            raise BadRequest(f"{SCALE_ENTRY} must be a JSON object",
                             code="InvalidModelImportFormat")
    policy = meta.get("policy")
    return data, policy if isinstance(policy, str) else None, scale


def _policy_or(text: str | None, fallback: PolicySpec) -> PolicySpec:
    if text:
        try:
            return PolicySpec.parse(text)
        except ValueError:
            pass
    return fallback
