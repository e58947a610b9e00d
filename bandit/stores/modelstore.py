"""Versioned model files plus an atomically replaced ``manifest.json``.

Layout of the store directory::

    model-000012.vw        VW model (save_resume, so learning can continue)
    model-000012.json      that version's manifest (kept for listing/rollback)
    manifest.json          the current version's manifest
    state-<n>.json         attachments such as the learner's join state, named in a
                           manifest's ``extra`` with their sha256

Every file is written to a temporary name, fsynced and renamed, and the directory
is fsynced, so a crash at any moment leaves either the old or the new manifest,
never a torn one. A reader loads a model only when its sha256 matches the manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from bandit.core.events import utc_now
from bandit.core.scaling import served_snapshot
from bandit.core.vw_adapter import VWModel


@dataclass(frozen=True)
class Slot:
    """A version reserved for a model being saved (see :meth:`ModelStore.reserve`)."""

    version: str
    name: str
    tmp: str

    def discard(self) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


class Savable(Protocol):
    """A model that can save itself to a file (a VW model, here or in a child)."""

    def save(self, path: str | Path) -> None: ...

_VERSION_FILE = re.compile(r"^model-(\d+)\.json$")
_VERSION_NAME = re.compile(r"^\d{1,32}$")


class ModelStoreError(Exception):
    """A model that must not be served: missing, truncated or checksum mismatch."""


@dataclass(frozen=True)
class Manifest:
    version: str
    file: str
    sha256: str
    policy: str
    events_learned: int
    created_at: str
    offsets: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            obj = orjson.loads(raw)
            return cls(version=str(obj["version"]), file=str(obj["file"]),
                       sha256=str(obj["sha256"]), policy=str(obj["policy"]),
                       events_learned=int(obj["events_learned"]),
                       created_at=str(obj["created_at"]),
                       offsets={str(k): int(v) for k, v in obj.get("offsets", {}).items()},
                       extra=dict(obj.get("extra", {})))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelStoreError(f"unreadable manifest: {exc}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class VersionFiles:
    """The store's files: versioned model files, each with its manifest, the current
    one named by ``manifest.json``, and attachments (``state-<n>.json``), every one
    written atomically; old versions are pruned, but for those :meth:`_protected`."""

    def __init__(self, directory: str | Path, keep: int = 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def current(self) -> Manifest | None:
        """The current manifest, or ``None`` for an empty store."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        return Manifest.from_json(raw)

    def versions(self) -> list[Manifest]:
        """Every version still in the store, oldest first."""
        out = []
        for p in sorted(self.dir.iterdir()):
            if _VERSION_FILE.match(p.name):
                try:
                    out.append(Manifest.from_json(p.read_bytes()))
                except ModelStoreError:
                    continue
        return out

    def next_version(self) -> str:
        cur = self.current()
        nums = [int(m.version) for m in self.versions() if m.version.isdigit()]
        if cur is not None and cur.version.isdigit():
            nums.append(int(cur.version))
        return f"{max(nums, default=0) + 1:06d}"

    def publish(self, model: Savable, policy: str, events_learned: int,
                offsets: dict[str, int] | None = None,
                extra: dict[str, Any] | None = None) -> Manifest:
        """Save ``model`` as a new version and make it current, atomically."""
        slot = self.reserve()
        try:
            model.save(slot.tmp)
        except BaseException:
            slot.discard()
            raise
        return self.publish_file(slot, policy, events_learned, offsets, extra)

    def reserve(self) -> Slot:
        """The next version's name and a temporary path for its model file (for a model
        saved asynchronously, then :meth:`publish_file`)."""
        version = self.next_version()
        name = f"model-{version}.vw"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
        os.close(fd)
        return Slot(version, name, tmp)

    def publish_file(self, slot: Slot, policy: str, events_learned: int,
                     offsets: dict[str, int] | None = None,
                     extra: dict[str, Any] | None = None) -> Manifest:
        """Make the model saved at ``slot.tmp`` the new current version, atomically."""
        try:
            with open(slot.tmp, "rb") as f:
                os.fsync(f.fileno())
            digest = sha256_file(Path(slot.tmp))
            os.replace(slot.tmp, self.dir / slot.name)
        except BaseException:
            slot.discard()
            raise
        manifest = Manifest(slot.version, slot.name, digest, policy, events_learned, utc_now(),
                            dict(offsets or {}), dict(extra or {}))
        atomic_write(self.dir / f"model-{slot.version}.json", manifest.to_json())
        atomic_write(self.manifest_path, manifest.to_json())
        self._prune()
        return manifest

    def write_attachment(self, prefix: str, data: bytes) -> dict[str, str]:
        """Store ``data`` durably under a fresh name; returns ``{"file", "sha256"}``
        to put in a manifest's ``extra`` (write it before the manifest that names it)."""
        name = f"{prefix}-{time.time_ns()}.json"
        atomic_write(self.dir / name, data)
        return {"file": name, "sha256": hashlib.sha256(data).hexdigest()}

    def read_attachment(self, ref: dict[str, str]) -> bytes:
        path = self.dir / ref["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelStoreError(f"attachment {path} is missing") from None
        if hashlib.sha256(data).hexdigest() != ref["sha256"]:
            raise ModelStoreError(f"checksum mismatch for {path}")
        return data

    def update(self, manifest: Manifest, offsets: dict[str, int],
               extra: dict[str, Any]) -> Manifest:
        """Same model version, new offsets and extra (a checkpoint with nothing new
        learned): servers keep serving the model they have. If another version became
        current meanwhile (a server replaced the model: a reset, an import, new learning
        settings), it stays current; only this version's own record is updated."""
        new = Manifest(manifest.version, manifest.file, manifest.sha256, manifest.policy,
                       manifest.events_learned, manifest.created_at, dict(offsets), dict(extra))
        atomic_write(self.dir / f"model-{new.version}.json", new.to_json())
        try:
            cur = self.current()
        except ModelStoreError:
            cur = None
        if cur is None or cur.version == new.version:
            atomic_write(self.manifest_path, new.to_json())
        self._prune()
        return new

    def version(self, version: str) -> Manifest:
        if not _VERSION_NAME.match(version):  # never a path, never too long for one
            raise ModelStoreError(f"no version {version[:40]!r}: versions are 1 to 32 "
                                  "digits")
        path = self.dir / f"model-{version}.json"
        try:
            return Manifest.from_json(path.read_bytes())
        except FileNotFoundError:
            raise ModelStoreError(f"no version {version} in {self.dir} (it may have been "
                                  f"pruned; the store keeps {self.keep})") from None

    def verify(self, manifest: Manifest) -> Path:
        path = self.dir / manifest.file
        if not path.is_file():
            raise ModelStoreError(f"model file {path} is missing")
        digest = sha256_file(path)
        if digest != manifest.sha256:
            raise ModelStoreError(f"checksum mismatch for {path}: manifest {manifest.sha256[:12]}"
                                  f"…, file {digest[:12]}…")
        return path

    def _protected(self) -> set[str]:
        """Versions never pruned, however old (here: none)."""
        return set()

    def _prune(self) -> None:
        versions = self.versions()
        cur = self.current()
        kept = self._protected() | ({cur.version} if cur is not None else set())
        for m in versions[: max(0, len(versions) - self.keep)]:
            if m.version in kept:
                continue
            for p in (self.dir / m.file, self.dir / f"model-{m.version}.json"):
                p.unlink(missing_ok=True)
        referenced = {str(ref.get("file")) for m in [*self.versions(), cur] if m is not None
                      for ref in m.extra.values() if isinstance(ref, dict)}
        for p in self.dir.glob("state-*.json"):
            if p.name not in referenced:
                p.unlink(missing_ok=True)


class ModelStore(VersionFiles):
    """A model store: :class:`VersionFiles` and what the loop does with them — serve a
    verified model with its standardisation, pin a version (rollback, the promotion
    guard), put a model in place of the current one, export and import, and keep the
    loop's live configuration."""

    # -- the loop's live configuration (see bandit.config.loop_config) -------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    def read_config(self) -> dict[str, Any] | None:
        """The stored loop configuration, or None before it is first written."""
        try:
            raw = self.config_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ModelStoreError(f"{self.config_path} is unreadable: {exc}") from None
        if not isinstance(obj, dict):
            raise ModelStoreError(f"{self.config_path} is not a JSON object")
        return obj

    def write_config(self, obj: dict[str, Any]) -> None:
        atomic_write(self.config_path, orjson.dumps(obj, option=orjson.OPT_INDENT_2))

    def replace_model(self, model: Savable, policy: str,
                      extra: dict[str, Any] | None = None,
                      feature_scale: dict[str, Any] | None = None) -> Manifest:
        """Serve ``model`` from now on in place of the current one (a reset, an import, new
        learning settings): a new current version that keeps the current one's offsets
        and learner state, so a learner resuming from it continues where it was, with
        this model. Unpins."""
        cur = self.current()
        # (the statistics of the offers and features were the replaced model's)
        kept = {k: v for k, v in (cur.extra if cur else {}).items()
                if k not in ("offer_stats", "feature_scale")}
        if feature_scale:  # the standardisation ``model`` was learned with
            kept["feature_scale"] = self.write_attachment("state", orjson.dumps(feature_scale))
        manifest = self.publish(model, policy, 0, dict(cur.offsets) if cur else {},
                                {**kept, **(extra or {})})
        self.unpin()
        return manifest

    # -- pinning (rollback), export and import ------------------------------------------
    @property
    def pin_path(self) -> Path:
        return self.dir / "pin.json"

    def pin(self, version: str, reason: str = "manual") -> Manifest:
        """Serve ``version`` from now on, whatever the learner publishes (rollback)."""
        m = self.version(version)
        self.verify(m)
        atomic_write(self.pin_path, orjson.dumps({"version": m.version, "pinned_at":
                                                  utc_now(), "reason": reason}))
        return m

    def pin_reason(self) -> str | None:
        try:
            return str(orjson.loads(self.pin_path.read_bytes()).get("reason", "manual"))
        except (FileNotFoundError, orjson.JSONDecodeError, AttributeError):
            return None

    def unpin(self) -> None:
        self.pin_path.unlink(missing_ok=True)

    def pinned(self) -> Manifest | None:
        try:
            raw = self.pin_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self.version(str(orjson.loads(raw)["version"]))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelStoreError(f"{self.pin_path} is unreadable: {exc}") from None

    def _protected(self) -> set[str]:
        """The pinned version is never pruned."""
        try:
            pin = self.pinned()
        except ModelStoreError:
            return set()
        return {pin.version} if pin is not None else set()

    def serving(self) -> Manifest | None:
        """What servers should serve: the pinned version, else the current one."""
        return self.pinned() or self.current()

    def export(self, version: str, target: str | Path) -> Path:
        """Copy a version's model and manifest into ``target`` (a directory)."""
        m = self.version(version)
        self.verify(m)
        out = Path(target)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.dir / m.file, out / m.file)
        ref = m.extra.get("feature_scale")
        if isinstance(ref, dict):  # the standardisation the model is served with
            atomic_write(out / str(ref["file"]), self.read_attachment(ref))
        atomic_write(out / "manifest.json", m.to_json())
        return out

    def import_(self, source: str | Path) -> Manifest:
        """Add an exported model as a new version (checksum verified; not served until
        pinned)."""
        src = Path(source)
        try:
            m = Manifest.from_json((src / "manifest.json").read_bytes())
        except FileNotFoundError:
            raise ModelStoreError(f"{src}/manifest.json not found") from None
        digest = sha256_file(src / m.file) if (src / m.file).is_file() else ""
        if digest != m.sha256:
            raise ModelStoreError(f"{src / m.file}: missing or checksum mismatch")
        version = self.next_version()
        name = f"model-{version}.vw"
        tmp = self.dir / f".{name}.import"
        extra: dict[str, Any] = {"imported_from": m.version,
                                 **{k: v for k, v in m.extra.items() if k == "offer_stats"}}
        ref = m.extra.get("feature_scale")
        if isinstance(ref, dict):
            data = (src / str(ref.get("file"))).read_bytes() \
                if (src / str(ref.get("file"))).is_file() else b""
            if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
                raise ModelStoreError(f"{src}: feature scale missing or checksum mismatch")
            extra["feature_scale"] = self.write_attachment("state", data)
        shutil.copyfile(src / m.file, tmp)
        os.replace(tmp, self.dir / name)
        new = Manifest(version, name, m.sha256, m.policy, m.events_learned, utc_now(),
                       dict(m.offsets), extra)
        atomic_write(self.dir / f"model-{version}.json", new.to_json())
        return new

    def set_current(self, manifest: Manifest) -> None:
        """Point ``manifest.json`` at an existing version (rollback)."""
        self.verify(manifest)
        atomic_write(self.manifest_path, manifest.to_json())

    def load(self, manifest: Manifest, *, json_input: bool = False) -> VWModel:
        """Load a verified model; raise :class:`ModelStoreError` if it must not be served."""
        path = self.verify(manifest)
        try:
            model = VWModel.load(path, json_input=json_input)
        except Exception as exc:  # VW raises plain RuntimeError on a corrupt file
            raise ModelStoreError(f"VW could not load {path}: {exc}") from None
        # served with the standardisation its weights were learned under
        try:
            model.set_scale(served_snapshot(self.feature_scale(manifest)))
        except ModelStoreError:
            model.close()
            raise
        return model

    def feature_scale(self, manifest: Manifest) -> dict[str, Any]:
        """The standardisation statistics a model was saved with (see
        :mod:`bandit.core.scaling`; ``{}`` for a model without)."""
        ref = manifest.extra.get("feature_scale")
        if not isinstance(ref, dict):
            return {}
        try:
            obj = orjson.loads(self.read_attachment(ref))
        except orjson.JSONDecodeError as exc:
            raise ModelStoreError(f"unreadable feature scale of {manifest.version}: {exc}") \
                from None
        return obj if isinstance(obj, dict) else {}
