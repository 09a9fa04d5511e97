"""The copy itself: experiments, logged models, runs (info, params, tags, every metric point,
inputs, outputs, artifacts), logged-model artifacts, the model registry, then lifecycles.

Order matters in three places. Experiments and runs are imported active and take their deleted
state last (writes to a deleted run are refused, and deleting an experiment cascades to its runs).
Logged models exist before run metrics arrive (the writer links a metric logged with a model id
only to a model that exists). A run's metric batches go out one after another with enqueued acks
and the run's last import call waits for the commit: the same partition applies them in order, so
when that call returns, everything before it is in MongoDB, and `run-state` counts are the final
commit check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.points import batches, canonical
from genesis_flow.migrate.progress import Progress
from genesis_flow.migrate.registry import copy_registry
from genesis_flow.migrate.source import Source
from genesis_flow.migrate.target import Target, TargetError, proxied_root

log = logging.getLogger("genesis_flow.migrate")


class Migration:
    def __init__(self, opts: pl.Options, source: Source, target: Target):
        self.opts = opts
        self.source = source
        self.target = target
        self.stats = pl.Stats()
        self._points_bar: Progress | None = None
        self._bytes_bar: Progress | None = None
        self._model_locations: dict[str, str] = {}  # logged model id -> its target artifact location
        self._model_metrics: dict[str, list[dict[str, Any]]] = {}  # run id -> its points linked to models
        self._lock = threading.Lock()  # runs are copied by several threads; the counters are shared

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    # --- the phases ------------------------------------------------------------------------------

    def run(self) -> pl.Stats:
        started = time.monotonic()
        experiments = pl.select_experiments(self.source.experiments(), self.opts.experiments)
        imported = self._experiments(experiments)
        runs = [r for e in imported for r in self.source.runs(e.experiment_id)
                if pl.run_selected(r, self.opts.since_ms)]
        self._logged_models_info(imported)
        self._runs(runs)
        if self.opts.artifacts:
            self._logged_model_artifacts(imported)
        if self.opts.registry and not self.opts.dry_run:
            copy_registry(self.source, self.target, self.stats)
        if not self.opts.dry_run:
            for exp in imported:
                if exp.lifecycle_stage != "active":
                    try:
                        self.target.import_experiment(pl.experiment_body(exp, exp.lifecycle_stage))
                    except TargetError as exc:
                        self.stats.errors.append(f"experiment {exp.experiment_id} lifecycle: {exc}")
        self.stats.seconds = round(time.monotonic() - started, 3)
        return self.stats

    def _experiments(self, experiments: list[Any]) -> list[Any]:
        imported = []
        with Progress("experiments", len(experiments), enabled=self.opts.progress) as bar:
            for exp in experiments:
                bar.update()
                if self.opts.dry_run:
                    imported.append(exp)
                    continue
                try:
                    self.target.import_experiment(pl.experiment_body(exp, "active"))
                except TargetError as exc:
                    self.stats.errors.append(f"experiment {exp.experiment_id} ({exp.name!r}): {exc}")
                    continue
                self.stats.experiments += 1
                imported.append(exp)
        return imported

    def _runs(self, runs: list[Any]) -> None:
        with Progress("runs", len(runs), enabled=self.opts.progress) as bar, \
                Progress("metric points", None, "pt", enabled=self.opts.progress, unit_scale=True) as pts, \
                Progress("artifacts", None, "B", enabled=self.opts.progress, unit_scale=True) as byts:
            self._points_bar, self._bytes_bar = pts, byts
            with ThreadPoolExecutor(max_workers=max(1, self.opts.workers), thread_name_prefix="migrate") as pool:
                futures = {pool.submit(self.copy_run, r): r for r in runs}
                for fut in as_completed(futures):
                    run = futures[fut]
                    bar.update()
                    try:
                        fut.result()
                    except Exception as exc:  # one run's failure must not stop the others
                        log.debug("run %s failed", run.info.run_id, exc_info=True)
                        self.stats.errors.append(f"run {run.info.run_id}: {type(exc).__name__}: {exc}")

    # --- one run ---------------------------------------------------------------------------------

    def copy_run(self, run: Any) -> None:
        info = run.info
        run_id = info.run_id
        self.count(runs=1)
        full = self.source.store.get_run(run_id)  # search results may omit inputs/outputs
        with_data = pl.data_fits_import(full)
        imported: dict[str, Any] = {}
        if not self.opts.dry_run:
            # Committed, in the run's partition: whatever an interrupted earlier attempt left in the
            # queue is in MongoDB once this returns, so the counts read next are exact.
            imported = self.target.import_run(pl.run_body(full, "active", with_data=with_data))
        state = self.target.run_state(run_id)
        stored = state.get("metric_points", {})
        expected: dict[str, int] = {}

        def missing() -> Iterator[tuple[str, list[Any]]]:
            """One history in memory at a time: read, deduplicate, sort, cut the stored prefix."""
            for key in sorted(full.data.metrics):
                points, dropped = canonical(self.source.history(run_id, key))
                expected[key] = len(points)
                self.count(histories=1, points=len(points), duplicates_dropped=dropped)
                yield key, pl.missing_suffix(points, stored.get(key, 0))

        files = self.source.artifact_files(info.artifact_uri) if self.opts.artifacts else []
        if self.opts.dry_run:
            self._note_dry(state, sum(len(m) for _, m in missing()), files)
            return
        if not with_data:
            for body in pl.params_tags_batches(full):
                self.target.log_batch(run_id, params=body["params"], tags=body["tags"], ack="enqueued")
        self.count(params_tags_sent=len(full.data.params) + len(full.data.tags))
        sent = 0
        for batch in batches(missing()):
            self.target.log_batch(run_id, metrics=batch, ack="enqueued")
            sent += len(batch)
            self.count(points_sent=len(batch))
            if self._points_bar:
                self._points_bar.update(len(batch))
        linked = self._model_metrics.get(run_id, [])
        for i in range(0, len(linked), pl.PARAMS_TAGS_PER_BATCH):
            # The history has these points already (the writer drops them as duplicates); logged
            # again with their model id, they join the model's metrics, as in MLflow 3.
            self.target.log_batch(run_id, metrics=linked[i:i + pl.PARAMS_TAGS_PER_BATCH], ack="enqueued")
        datasets, models_in = pl.dataset_inputs(full), pl.model_inputs(full)
        if datasets or models_in:  # the writer keeps one entry per dataset (name, digest) and model
            self.target.log_inputs(run_id, datasets, models_in)
        outputs = pl.model_outputs(full)
        if outputs:
            self.target.log_outputs(run_id, outputs)
        if files:
            self._copy_files(info.artifact_uri, imported["artifact_uri"], files)
        # The run's last write waits for the commit: everything sent before it is in MongoDB now.
        self.target.import_run(pl.run_body(full, info.lifecycle_stage, with_data=False))
        self._commit_check(run_id, expected)
        if sent == 0 and not imported.get("created"):
            self.count(runs_complete_already=1)

    def _commit_check(self, run_id: str, expected: dict[str, int]) -> None:
        stored = self.target.run_state(run_id).get("metric_points", {})
        wrong = {k: (stored.get(k, 0), n) for k, n in expected.items() if stored.get(k, 0) != n}
        if wrong:
            raise TargetError(f"after the final commit the target holds {wrong} (stored, expected) points")

    def _note_dry(self, state: dict[str, Any], n_missing: int, files: list[Any]) -> None:
        have: dict[str, int] = {}
        if state.get("exists"):
            try:
                have = self.target.artifact_listing(proxied_root(state.get("artifact_uri", "")))
            except TargetError:
                pass
        todo = [f for f in files if have.get(f.path) != f.size]
        with self._lock:
            w = self.stats.would_copy
            for name, n in (("runs_new", 0 if state.get("exists") else 1), ("points", n_missing),
                            ("files", len(todo)), ("bytes", sum(f.size for f in todo))):
                w[name] = w.get(name, 0) + n

    def _copy_files(self, source_uri: str, target_uri: str, files: list[Any]) -> None:
        root = proxied_root(target_uri)
        have = self.target.artifact_listing(root)
        for f in files:
            self.count(files=1)
            if have.get(f.path) == f.size:
                continue
            with self.source.artifact_file(source_uri, f.path) as local:
                size, _ = self.target.upload(f"{root}/{f.path}", local)
            self.count(files_sent=1, bytes_sent=size)
            if self._bytes_bar:
                self._bytes_bar.update(size)

    # --- logged models ---------------------------------------------------------------------------

    def _logged_models_info(self, experiments: list[Any]) -> None:
        for exp in experiments:
            for model in self.source.logged_models(exp.experiment_id):
                self.stats.logged_models += 1
                if self.opts.dry_run:
                    continue
                for m in model.metrics or []:
                    if m.run_id:
                        self._model_metrics.setdefault(m.run_id, []).append(pl.model_metric(model.model_id, m))
                    else:
                        self.stats.errors.append(f"logged model {model.model_id}: metric {m.key!r} has no run")
                try:
                    answer = self.target.import_logged_model(pl.logged_model_body(model))
                    self._model_locations[model.model_id] = answer["artifact_location"]
                except TargetError as exc:
                    self.stats.errors.append(f"logged model {model.model_id}: {exc}")

    def _logged_model_artifacts(self, experiments: list[Any]) -> None:
        for exp in experiments:
            for model in self.source.logged_models(exp.experiment_id):
                files = self.source.artifact_files(model.artifact_location)
                target_location = self._model_locations.get(model.model_id)
                if self.opts.dry_run or not files or target_location is None:
                    continue
                try:
                    self._copy_files(model.artifact_location, target_location, files)
                except Exception as exc:
                    self.stats.errors.append(f"logged model {model.model_id} artifacts: {exc}")


def migrate(opts: pl.Options) -> dict[str, Any]:
    source = Source(opts.source_uri, opts.source_artifacts)
    target = Target(opts.target_uri)
    target.check()
    stats = Migration(opts, source, target).run()
    return {"source": opts.source_uri, "target": opts.target_uri, "dry_run": opts.dry_run, **stats.as_dict()}
