"""`--verify`: read both sides back and list every difference. The target is read the way users
read it (the stock `MlflowClient` through the query tier, artifact downloads through the proxy),
so what is compared is what people will see: experiments, runs (info, params, tags, inputs),
every history's point count and digest, artifact sizes and SHA-256, logged models and the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.points import (
    canonical,
    from_mlflow,
    history_digest,
    value_text,
)
from genesis_flow.migrate.progress import Progress
from genesis_flow.migrate.source import Source
from genesis_flow.migrate.target import Target, TargetError, file_sha256, proxied_root

MAX_DIFFERENCES = 200
DEFAULT_EXPERIMENT_ID = "0"


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class Verifier:
    def __init__(self, opts: pl.Options, source: Source, target: Target):
        self.opts = opts
        self.source = source
        self.target = target
        self.client = _client(target.uri)
        self.differences: list[str] = []
        self.deleted_experiments: set[str] = set()
        self.checked = {"experiments": 0, "runs": 0, "histories": 0, "points": 0, "artifact_files": 0,
                        "artifact_bytes": 0, "logged_models": 0, "registered_models": 0, "model_versions": 0}

    def differ(self, what: str, got: Any, expected: Any) -> None:
        if got != expected and len(self.differences) < MAX_DIFFERENCES:
            self.differences.append(f"{what}: target {_short(got)} != source {_short(expected)}")

    def run(self) -> dict[str, Any]:
        experiments = pl.select_experiments(self.source.experiments(), self.opts.experiments)
        runs = []
        self.deleted_experiments = {e.experiment_id for e in experiments if e.lifecycle_stage != "active"}
        for exp in experiments:
            self._experiment(exp)
            runs.extend(r for r in self.source.runs(exp.experiment_id) if pl.run_selected(r, self.opts.since_ms))
        with Progress("verify runs", len(runs), enabled=self.opts.progress) as bar, \
                ThreadPoolExecutor(max_workers=max(1, self.opts.workers)) as pool:
            for _ in pool.map(self._guarded(self._run, bar), runs):
                pass
        for exp in experiments:
            for model in self.source.logged_models(exp.experiment_id):
                self._guarded(self._logged_model)(model)
        if self.opts.registry:
            self._registry()
        return {"ok": not self.differences, "differences": self.differences, "checked": self.checked}

    def _guarded(self, step: Callable[[Any], None], bar: Progress | None = None) -> Callable[[Any], None]:
        def call(item: Any) -> None:
            try:
                step(item)
            except Exception as exc:
                name = getattr(getattr(item, "info", None), "run_id", None) or getattr(item, "model_id", item)
                self.differences.append(f"{name}: cannot compare: {type(exc).__name__}: {exc}")
            finally:
                if bar is not None:
                    bar.update()
        return call

    # --- tracking ----------------------------------------------------------------------------------

    def _experiment(self, exp: Any) -> None:
        self.checked["experiments"] += 1
        try:
            got = self.client.get_experiment(exp.experiment_id)
        except Exception as exc:
            self.differences.append(f"experiment {exp.experiment_id}: missing on the target ({exc})")
            return
        where = f"experiment {exp.experiment_id}"
        self.differ(f"{where} name", got.name, exp.name)
        self.differ(f"{where} lifecycle_stage", got.lifecycle_stage, exp.lifecycle_stage)
        self.differ(f"{where} tags", _subset(got.tags, exp.tags), dict(exp.tags or {}))
        if exp.experiment_id != DEFAULT_EXPERIMENT_ID:  # the target's own Default keeps its times
            for field in ("creation_time", "last_update_time"):
                self.differ(f"{where} {field}", getattr(got, field), getattr(exp, field))

    def _run(self, run: Any) -> None:
        self.checked["runs"] += 1
        run_id = run.info.run_id
        src = self.source.store.get_run(run_id)
        got = self.client.get_run(run_id)
        where = f"run {run_id}"
        for field in ("experiment_id", "status", "start_time", "end_time", "user_id", "run_name"):
            self.differ(f"{where} {field}", getattr(got.info, field), getattr(src.info, field))
        # Deleting an experiment deletes its runs (MLflow's SQL store and Genesis-Flow; the file
        # store leaves their own stage as it was)
        stage = "deleted" if src.info.experiment_id in self.deleted_experiments else src.info.lifecycle_stage
        self.differ(f"{where} lifecycle_stage", got.info.lifecycle_stage, stage)
        self.differ(f"{where} params", dict(got.data.params), dict(src.data.params))
        self.differ(f"{where} tags", dict(got.data.tags), dict(src.data.tags))
        self.differ(f"{where} metric keys", sorted(got.data.metrics), sorted(src.data.metrics))
        for key in sorted(src.data.metrics):
            expected, _ = canonical(self.source.history(run_id, key))
            actual = [from_mlflow(m) for m in self.client.get_metric_history(run_id, key)]
            self.checked["histories"] += 1
            self.checked["points"] += len(actual)
            self.differ(f"{where} history {key!r} (points, digest)", history_digest(run_id, key, actual),
                        history_digest(run_id, key, expected))
        self.differ(f"{where} datasets", _datasets(got), _datasets(src))
        if self.opts.artifacts:
            self._artifacts(where, src.info.artifact_uri, got.info.artifact_uri)

    def _artifacts(self, where: str, source_uri: str, target_uri: str) -> None:
        files = self.source.artifact_files(source_uri)
        root = proxied_root(target_uri)
        listing = self.target.artifact_listing(root)
        self.differ(f"{where} artifact files", sorted(listing.items()), sorted((f.path, f.size) for f in files))
        for f in files:
            if f.path not in listing:
                continue
            with self.source.artifact_file(source_uri, f.path) as local:
                expected = (f.size, file_sha256(local))
            got = self.target.artifact_sha256(f"{root}/{f.path}")
            self.checked["artifact_files"] += 1
            self.checked["artifact_bytes"] += got[0]
            self.differ(f"{where} artifact {f.path} (size, sha256)", got, expected)

    def _logged_model(self, model: Any) -> None:
        self.checked["logged_models"] += 1
        got = self.client.get_logged_model(model.model_id)
        where = f"logged model {model.model_id}"
        for field in ("name", "experiment_id", "source_run_id", "model_type", "status"):
            self.differ(f"{where} {field}", str(getattr(got, field) or ""), str(getattr(model, field) or ""))
        self.differ(f"{where} params", dict(got.params), dict(model.params))
        self.differ(f"{where} tags", _subset(got.tags, model.tags), dict(model.tags or {}))
        self.differ(f"{where} metrics", _model_metrics(got), _model_metrics(model))
        if self.opts.artifacts:
            self._artifacts(where, model.artifact_location, got.artifact_location)

    # --- registry ----------------------------------------------------------------------------------

    def _registry(self) -> None:
        try:
            models = self.source.registered_models()
        except Exception as exc:  # noqa: BLE001 - whatever the store raises, it is reported
            self.differences.append(f"registry: cannot read the source registry: {exc}")
            return
        for rm in models:
            self.checked["registered_models"] += 1
            where = f"registered model {rm.name!r}"
            try:
                got = self.client.get_registered_model(rm.name)
            except Exception as exc:
                self.differences.append(f"{where}: missing on the target ({exc})")
                continue
            self.differ(f"{where} description", got.description or "", rm.description or "")
            self.differ(f"{where} creation_timestamp", got.creation_timestamp, rm.creation_timestamp)
            self.differ(f"{where} tags", dict(got.tags), dict(rm.tags or {}))
            self.differ(f"{where} aliases", {a: str(n) for a, n in (got.aliases or {}).items()},
                        {a: str(n) for a, n in (rm.aliases or {}).items()})
            versions = {int(v.version): v for v in self.client.search_model_versions(f"name = '{rm.name}'")}
            for mv in self.source.model_versions(rm.name):
                self.checked["model_versions"] += 1
                tv = versions.get(int(mv.version))
                if tv is None:
                    self.differences.append(f"{where} version {mv.version}: missing on the target")
                    continue
                # (the registry API does not show a version's model_id: its source names the model)
                for field in ("run_id", "current_stage", "description", "source"):
                    self.differ(f"{where} v{mv.version} {field}", getattr(tv, field, None) or None,
                                getattr(mv, field, None) or None)
                self.differ(f"{where} v{mv.version} tags", dict(tv.tags), dict(mv.tags or {}))


def _subset(got: dict[str, str] | None, expected: dict[str, str] | None) -> dict[str, str]:
    """The target's entries for the source's keys (the target may add its own system tags)."""
    got = dict(got or {})
    return {k: got[k] for k in (expected or {}) if k in got}


def _model_metrics(model: Any) -> list[tuple[Any, ...]]:
    return sorted((m.key, m.step, m.timestamp, value_text(m.value), m.run_id or "", m.dataset_name or "")
                  for m in model.metrics or [])


def _datasets(run: Any) -> list[tuple[str, str]]:
    inputs = getattr(run, "inputs", None)
    return sorted((di.dataset.name, di.dataset.digest) for di in getattr(inputs, "dataset_inputs", None) or [])


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def verify(opts: pl.Options) -> dict[str, Any]:
    source = Source(opts.source_uri, opts.source_artifacts)
    target = Target(opts.target_uri)
    try:
        return Verifier(opts, source, target).run()
    except TargetError as exc:
        return {"ok": False, "differences": [str(exc)], "checked": {}}
