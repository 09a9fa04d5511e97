"""Training jobs as the fault suite sees them: stock `MlflowClient`s streaming log-batches, each
recording which points it was told were stored and every exception it raised."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.entities import Metric

KEY = "loss"


@dataclass
class Job:
    run_id: str
    acked: list[int] = field(default_factory=list)  # steps of calls that returned
    errors: list[str] = field(default_factory=list)  # exceptions the training loop would have seen
    calls: int = 0


@dataclass
class Fleet:
    """`clients` jobs, each logging `per_call` points per log-batch until stopped."""

    client: MlflowClient
    jobs: list[Job]
    per_call: int
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, tracking_uri: str, experiment_id: str, clients: int = 8, per_call: int = 100) -> "Fleet":
        client = MlflowClient(tracking_uri=tracking_uri)
        jobs = [Job(client.create_run(experiment_id).info.run_id) for _ in range(clients)]
        fleet = cls(client, jobs, per_call)
        for job in jobs:
            thread = threading.Thread(target=fleet._stream, args=(job,), daemon=True)
            thread.start()
            fleet._threads.append(thread)
        return fleet

    def _stream(self, job: Job) -> None:
        step = 0
        while not self._stop.is_set():
            steps = range(step, step + self.per_call)
            metrics = [Metric(KEY, s * 0.5, 1_700_000_000_000 + s, s) for s in steps]
            job.calls += 1
            try:
                self.client.log_batch(job.run_id, metrics=metrics)
                job.acked.extend(steps)
            except Exception as exc:  # noqa: BLE001 - what a training loop would crash on
                job.errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            step += self.per_call
            time.sleep(0.05)

    def stop(self, timeout: float = 600) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    @property
    def acked(self) -> int:
        return sum(len(j.acked) for j in self.jobs)

    @property
    def errors(self) -> list[str]:
        return [e for j in self.jobs for e in j.errors]

    def stored_steps(self, job: Job) -> Counter[int]:
        return Counter(m.step for m in self.client.get_metric_history(job.run_id, KEY))

    def wait_stored(self, timeout: float = 120) -> tuple[int, int, int]:
        """(acknowledged, of them stored, duplicates) once every acknowledged point is stored
        or the timeout passed (the writer drains the backlog an outage left)."""
        deadline = time.monotonic() + timeout
        while True:
            stored = duplicates = 0
            for job in self.jobs:
                counts = self.stored_steps(job)
                stored += sum(1 for s in job.acked if counts.get(s))
                duplicates += sum(n - 1 for n in counts.values() if n > 1)
            if stored == self.acked or time.monotonic() > deadline:
                return self.acked, stored, duplicates
            time.sleep(2)
