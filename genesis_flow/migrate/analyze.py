"""`--analyze-only`: what a migration would move, what it cannot and why, and how long it should
take. Reads the source only; writes nothing anywhere.

Names and values are checked with the same `common.validation` functions ingest applies, so
"cannot be carried over" means exactly what the target would refuse. The duration is estimated
from the time this pass measured reading the source (every history is read: the point counts are
exact) plus a short sample of artifact bytes, and the target's write rates measured on the
test machine (README, "Migrating from MLflow"), whichever side is slower.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from typing import Any

from common import validation as v
from common.errors import MlflowError
from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.points import canonical
from genesis_flow.migrate.progress import Progress
from genesis_flow.migrate.source import Source

log = logging.getLogger("genesis_flow.migrate")

# Measured into the distributed test stack on a 2-core machine (tests/migration, README).
TARGET_POINTS_PER_S = 30_000.0
TARGET_MIB_PER_S = 15.0
TARGET_S_PER_RUN = 0.15  # import calls, run-state, listings, the final commit
SAMPLE_BYTES = 32 * 2**20
LARGEST = 10
MAX_ISSUES = 500


def _problem(check: Any, *args: Any, **kwargs: Any) -> str | None:
    try:
        check(*args, **kwargs)
    except MlflowError as exc:
        return exc.message
    return None


class Analysis:
    def __init__(self, opts: pl.Options, source: Source):
        self.opts = opts
        self.source = source
        self.counts: Counter[str] = Counter()
        self.issues: list[dict[str, str]] = []
        self.largest: list[tuple[int, int, str, dict[str, Any]]] = []
        self.read_s = 0.0

    def issue(self, entity: str, what: str, why: str) -> None:
        self.counts["issues"] += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"entity": entity, "what": what, "why": why})

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        experiments = pl.select_experiments(self.source.experiments(), self.opts.experiments)
        runs: list[Any] = []
        for exp in experiments:
            self.counts["experiments"] += 1
            self.counts[f"experiments_{exp.lifecycle_stage}"] += 1
            if (p := _problem(v.validate_experiment_name, exp.name)) is not None:
                self.issue(f"experiment {exp.experiment_id}", f"name {exp.name!r}", p)
            for key, value in (exp.tags or {}).items():
                if (p := _problem(v.validate_experiment_tag, key, value)) is not None:
                    self.issue(f"experiment {exp.experiment_id}", f"tag {key!r}", p)
            runs.extend(r for r in self.source.runs(exp.experiment_id) if pl.run_selected(r, self.opts.since_ms))
            for model in self.source.logged_models(exp.experiment_id):
                self.counts["logged_models"] += 1
                files = self._files(model.artifact_location, f"logged model {model.model_id}")
                self.counts["logged_model_artifact_files"] += len(files)
                self.counts["logged_model_artifact_bytes"] += sum(f.size for f in files)
        with Progress("analyze runs", len(runs), enabled=self.opts.progress) as bar:
            for run in runs:
                self._run(run)
                bar.update()
        self._registry()
        sample = self._sample_artifact_rate(runs)
        report = {
            "source": self.source.uri,
            "counts": dict(sorted(self.counts.items())),
            "largest_runs": [entry for *_, entry in sorted(self.largest, reverse=True)],
            "cannot_carry": self.issues,
            "estimate": self._estimate(sample),
            "analysis_seconds": round(time.monotonic() - started, 2),
        }
        return report

    def _files(self, uri: str, entity: str) -> list[Any]:
        try:
            return self.source.artifact_files(uri)
        except Exception as exc:
            self.issue(entity, f"artifacts at {uri}", f"cannot be listed: {exc}")
            return []

    def _run(self, run: Any) -> None:
        info, data = run.info, run.data
        entity = f"run {info.run_id}"
        self.counts["runs"] += 1
        self.counts[f"runs_{info.status}"] += 1
        self.counts[f"runs_{info.lifecycle_stage}"] += 1
        self.counts["params"] += len(data.params)
        self.counts["tags"] += len(data.tags)
        if (p := _problem(v.validate_run_id, info.run_id)) is not None:
            self.issue(entity, "run id", p)
        for key, value in data.params.items():
            if (p := _problem(v.validate_param, key, value)) is not None:
                self.issue(entity, f"param {key!r}", p)
        for key, value in data.tags.items():
            if (p := _problem(v.validate_tag, key, value)) is not None:
                self.issue(entity, f"tag {key!r}", p)
        points = 0
        for key in data.metrics:
            t0 = time.monotonic()
            history = self.source.history(info.run_id, key)
            self.read_s += time.monotonic() - t0
            unique, dropped = canonical(history)
            self.counts["metric_histories"] += 1
            points += len(unique)
            if dropped:
                self.counts["metric_points_exact_duplicates"] += dropped
                self.issue(entity, f"metric {key!r}", f"{dropped} exact duplicate point(s) (same step, timestamp "
                                                      "and value): stored once, as MLflow's SQL store does")
            if history and (p := _problem(v.validate_metric, key, 0.0, 0, 0)) is not None:
                self.issue(entity, f"metric {key!r}", p)
        self.counts["metric_points"] += points
        files = self._files(info.artifact_uri, entity)
        size = sum(f.size for f in files)
        self.counts["artifact_files"] += len(files)
        self.counts["artifact_bytes"] += size
        inputs = getattr(run, "inputs", None)
        self.counts["dataset_inputs"] += len(getattr(inputs, "dataset_inputs", None) or [])
        entry = {"run_id": info.run_id, "experiment_id": info.experiment_id, "metric_points": points,
                 "artifact_files": len(files), "artifact_bytes": size}
        item = (points, size, info.run_id, entry)
        if len(self.largest) < LARGEST:
            heapq.heappush(self.largest, item)
        else:
            heapq.heappushpop(self.largest, item)

    def _registry(self) -> None:
        try:
            models = self.source.registered_models()
        except Exception as exc:
            self.issue("registry", "registered models", f"cannot be read: {exc}")
            return
        for rm in models:
            self.counts["registered_models"] += 1
            versions = self.source.model_versions(rm.name)
            self.counts["model_versions"] += len(versions)
            self.counts["model_aliases"] += len(rm.aliases or {})
            numbers = {int(mv.version) for mv in versions}
            gaps = set(range(1, max(numbers, default=0) + 1)) - numbers
            if gaps:
                self.counts["model_version_numbers_consumed"] += len(gaps)

    def _sample_artifact_rate(self, runs: list[Any]) -> dict[str, float]:
        """Read up to SAMPLE_BYTES of artifacts: the source's artifact read rate."""
        read, spent = 0, 0.0
        for run in runs:
            if read >= SAMPLE_BYTES:
                break
            for f in self._files(run.info.artifact_uri, f"run {run.info.run_id}")[:5]:
                t0 = time.monotonic()
                try:
                    with self.source.artifact_file(run.info.artifact_uri, f.path) as local, open(local, "rb") as fh:
                        while chunk := fh.read(2**20):
                            read += len(chunk)
                            if read >= SAMPLE_BYTES:
                                break
                except Exception:  # noqa: BLE001 - a file the sample cannot read only narrows the sample
                    log.debug("sample read of %s failed", f.path, exc_info=True)
                    continue
                finally:
                    spent += time.monotonic() - t0
        return {"bytes": read, "seconds": spent}

    def _estimate(self, sample: dict[str, float]) -> dict[str, Any]:
        points = self.counts["metric_points"]
        mib = self.counts["artifact_bytes"] / 2**20
        source_pts = points / self.read_s if self.read_s > 0 and points else None
        source_mib = sample["bytes"] / 2**20 / sample["seconds"] if sample["seconds"] > 0 and sample["bytes"] else None
        pts_rate = min(r for r in (source_pts, TARGET_POINTS_PER_S) if r)
        mib_rate = min(r for r in (source_mib, TARGET_MIB_PER_S) if r)
        seconds = points / pts_rate + mib / mib_rate + self.counts["runs"] * TARGET_S_PER_RUN
        return {"seconds": round(seconds, 1), "workers_assumed": 1,
                "source_points_per_s": round(source_pts, 1) if source_pts else None,
                "source_mib_per_s": round(source_mib, 1) if source_mib else None,
                "sampled_artifact_bytes": sample["bytes"],
                "target_points_per_s": TARGET_POINTS_PER_S, "target_mib_per_s": TARGET_MIB_PER_S,
                "target_seconds_per_run": TARGET_S_PER_RUN}


def analyze(opts: pl.Options) -> dict[str, Any]:
    return Analysis(opts, Source(opts.source_uri, opts.source_artifacts)).run()
