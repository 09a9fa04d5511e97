"""The event contract between ingest and writer: one msgspec Struct per event kind.

Wire format: msgpack of an `Envelope`. The envelope carries the schema version, the event id
(idempotency key), the partition key (run or experiment id), the trace context and the reply
address for commit notices. Adding an optional field is a compatible change; anything else
bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import msgspec

SCHEMA_VERSION = 1


class Tag(msgspec.Struct, array_like=True, frozen=True):
    key: str
    value: str


class Metric(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    key: str
    value: float  # raw client value: may be NaN or +-inf; the writer normalises
    timestamp: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class Dataset(msgspec.Struct, omit_defaults=True):
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


class DatasetInput(msgspec.Struct, omit_defaults=True):
    dataset: Dataset
    tags: list[Tag] = []


class ModelRef(msgspec.Struct, omit_defaults=True):
    model_id: str
    step: int | None = None


# --- experiment events (partitioned by experiment id) -----------------------------------------


class ExperimentCreated(msgspec.Struct, tag=True):
    experiment_id: str
    name: str
    artifact_location: str
    creation_time: int
    tags: list[Tag] = []
    last_update_time: int | None = None  # an import's (default: the creation time)


class ExperimentRenamed(msgspec.Struct, tag=True):
    experiment_id: str
    new_name: str
    time: int


class ExperimentDeleted(msgspec.Struct, tag=True):
    experiment_id: str
    time: int


class ExperimentRestored(msgspec.Struct, tag=True):
    experiment_id: str
    time: int


class ExperimentTagSet(msgspec.Struct, tag=True):
    experiment_id: str
    key: str
    value: str


class ExperimentTagDeleted(msgspec.Struct, tag=True):
    experiment_id: str
    key: str


# --- run events (partitioned by run id) --------------------------------------------------------


class RunCreated(msgspec.Struct, tag=True):
    run_id: str
    experiment_id: str
    user_id: str
    run_name: str
    start_time: int
    artifact_uri: str
    tags: list[Tag] = []


class RunUpdated(msgspec.Struct, tag=True, omit_defaults=True):
    run_id: str
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class RunDeleted(msgspec.Struct, tag=True):
    run_id: str
    time: int


class RunRestored(msgspec.Struct, tag=True):
    run_id: str
    time: int


class RunDataLogged(msgspec.Struct, tag=True, omit_defaults=True):
    """log-metric, log-parameter, set-tag and log-batch: one event per request."""

    run_id: str
    metrics: list[Metric] = []
    params: list[Tag] = []
    tags: list[Tag] = []


class RunTagDeleted(msgspec.Struct, tag=True):
    run_id: str
    key: str


class RunInputsLogged(msgspec.Struct, tag=True, omit_defaults=True):
    run_id: str
    datasets: list[DatasetInput] = []
    models: list[ModelRef] = []


class RunOutputsLogged(msgspec.Struct, tag=True):
    run_id: str
    models: list[ModelRef]


# --- logged model events (partitioned by model id) --------------------------------------------


class LoggedModelCreated(msgspec.Struct, tag=True):
    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    creation_timestamp_ms: int
    model_type: str = ""
    source_run_id: str | None = None
    tags: list[Tag] = []
    params: list[Tag] = []


class LoggedModelFinalized(msgspec.Struct, tag=True):
    model_id: str
    status: str  # LOGGED_MODEL_READY | LOGGED_MODEL_UPLOAD_FAILED | ...
    time: int


class LoggedModelTagsSet(msgspec.Struct, tag=True):
    model_id: str
    tags: list[Tag]
    time: int


class LoggedModelTagDeleted(msgspec.Struct, tag=True):
    model_id: str
    key: str


class LoggedModelParamsLogged(msgspec.Struct, tag=True):
    model_id: str
    params: list[Tag]


class LoggedModelDeleted(msgspec.Struct, tag=True):
    model_id: str
    time: int


# --- artifact metadata (partitioned by the run or model the path belongs to) ------------------


class ArtifactStored(msgspec.Struct, tag=True, omit_defaults=True):
    path: str  # the full proxied path, e.g. "1/<run_id>/artifacts/reports/report.txt"
    size: int
    time: int
    sha256: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    model_id: str | None = None


class ArtifactDeleted(msgspec.Struct, tag=True, omit_defaults=True):
    path: str  # a file or a directory prefix
    time: int
    run_id: str | None = None
    model_id: str | None = None


# --- model registry events (partitioned by the registered model's internal key) ---------------
# One partition per registered model: its events apply in order, which is what numbers versions
# without gaps or repeats, and a rename does not move the model to another partition.


class RegisteredModelCreated(msgspec.Struct, tag=True, omit_defaults=True):
    model_key: str
    name: str
    time: int
    description: str | None = None
    tags: list[Tag] = []


class RegisteredModelRenamed(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    new_name: str
    time: int


class RegisteredModelUpdated(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    description: str
    time: int


class RegisteredModelDeleted(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    time: int


class RegisteredModelTagSet(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    key: str
    value: str


class RegisteredModelTagDeleted(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    key: str


class RegisteredModelAliasSet(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    alias: str
    version: int


class RegisteredModelAliasDeleted(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    alias: str


class ModelVersionCreated(msgspec.Struct, tag=True, omit_defaults=True):
    """The writer assigns the version number (the model's next) and reports it in the outcome."""

    model_key: str
    name: str  # as the client named it (for messages)
    time: int
    source: str
    storage_location: str
    run_id: str | None = None
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None
    tags: list[Tag] = []


class ModelVersionUpdated(msgspec.Struct, tag=True, omit_defaults=True):
    model_key: str
    name: str  # as the client named it (for messages)
    version: int
    time: int
    description: str | None = None  # None: unchanged (MLflow's HasField)


class ModelVersionStageSet(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    version: int
    stage: str  # canonical
    archive_existing: bool
    time: int


class ModelVersionDeleted(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    version: int
    time: int


class ModelVersionTagSet(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    version: int
    key: str
    value: str


class ModelVersionTagDeleted(msgspec.Struct, tag=True):
    model_key: str
    name: str  # as the client named it (for messages)
    version: int
    key: str


# --- trace events (MLflow 3 tracing; partitioned by trace id) -----------------------------------
# One partition per trace: its spans, its start_trace, tags and assessments apply in order on one
# writer, whatever order the client sent them in.


class SpanRecord(msgspec.Struct, omit_defaults=True):
    """One span as ingest decoded it: what the writer indexes, plus the stored form."""

    span_id: str  # 16 hex
    name: str
    start_ns: int
    end_ns: int
    status: str  # OK | ERROR | UNSET
    content: str  # the span as MLflow stores it (JSON of `Span.to_dict()`)
    parent_id: str | None = None
    span_type: str | None = None
    inputs: str | None = None  # root spans: the request preview
    outputs: str | None = None  # root spans: the response preview
    trace_tags: list[Tag] = []  # root spans: `mlflow.traceTag.*` attributes


class SpansLogged(msgspec.Struct, tag=True):
    trace_id: str
    experiment_id: str
    artifact_location: str  # the trace's, for a trace these spans create
    spans: list[SpanRecord]


class TraceStarted(msgspec.Struct, tag=True, omit_defaults=True):
    """start_trace (StartTraceV3): the client's final word on the trace info."""

    trace_id: str
    experiment_id: str
    artifact_location: str
    request_time: int
    state: str
    execution_duration: int | None = None
    request_preview: str | None = None
    response_preview: str | None = None
    client_request_id: str | None = None
    tags: list[Tag] = []
    metadata: list[Tag] = []
    assessments: list[str] = []  # JSON of each assessment as the API prints it
    mark_finalized: bool = True  # v3 start_trace says so in the metadata; the v2 start/end do not


class TraceTagSet(msgspec.Struct, tag=True):
    trace_id: str
    key: str
    value: str


class TraceTagDeleted(msgspec.Struct, tag=True):
    trace_id: str
    key: str


class TracesDeleted(msgspec.Struct, tag=True):
    experiment_id: str
    trace_ids: list[str]


class TracesLinkedToRun(msgspec.Struct, tag=True):
    run_id: str
    trace_ids: list[str]


class TracePromptsLinked(msgspec.Struct, tag=True):
    trace_id: str
    prompts: list[str]  # "<name>/<version>"


class AssessmentSet(msgspec.Struct, tag=True):
    """A created or updated assessment, whole (JSON as the API prints it)."""

    trace_id: str
    assessment_id: str
    assessment: str


class AssessmentDeleted(msgspec.Struct, tag=True):
    trace_id: str
    assessment_id: str


TraceEvent = (
    SpansLogged | TraceStarted | TraceTagSet | TraceTagDeleted | TracesDeleted | TracesLinkedToRun
    | TracePromptsLinked | AssessmentSet | AssessmentDeleted
)
TRACE_EVENTS = (
    SpansLogged, TraceStarted, TraceTagSet, TraceTagDeleted, TracesDeleted, TracesLinkedToRun,
    TracePromptsLinked, AssessmentSet, AssessmentDeleted,
)


ExperimentEvent = (
    ExperimentCreated | ExperimentRenamed | ExperimentDeleted | ExperimentRestored
    | ExperimentTagSet | ExperimentTagDeleted
)
RunEvent = (
    RunCreated | RunUpdated | RunDeleted | RunRestored | RunDataLogged | RunTagDeleted
    | RunInputsLogged | RunOutputsLogged
)
ModelEvent = (
    LoggedModelCreated | LoggedModelFinalized | LoggedModelTagsSet | LoggedModelTagDeleted
    | LoggedModelParamsLogged | LoggedModelDeleted
)
ArtifactEvent = ArtifactStored | ArtifactDeleted
RegistryEvent = (
    RegisteredModelCreated | RegisteredModelRenamed | RegisteredModelUpdated | RegisteredModelDeleted
    | RegisteredModelTagSet | RegisteredModelTagDeleted | RegisteredModelAliasSet | RegisteredModelAliasDeleted
    | ModelVersionCreated | ModelVersionUpdated | ModelVersionStageSet | ModelVersionDeleted
    | ModelVersionTagSet | ModelVersionTagDeleted
)
Event = ExperimentEvent | RunEvent | ModelEvent | ArtifactEvent | RegistryEvent | TraceEvent

EXPERIMENT_EVENTS = (
    ExperimentCreated, ExperimentRenamed, ExperimentDeleted, ExperimentRestored,
    ExperimentTagSet, ExperimentTagDeleted,
)


class Envelope(msgspec.Struct, omit_defaults=True):
    id: str
    partition_key: str
    published_at: int
    event: Event
    v: int = SCHEMA_VERSION
    reply_to: str | None = None  # where the writer sends the commit notice, if anyone waits
    trace: dict[str, str] = {}


class EventOutcome(msgspec.Struct, array_like=True, omit_defaults=True):
    """The writer's verdict on one event: committed (no error) or rejected with an MLflow error;
    `assigned` is what the writer decided for a committed event (a model version's number)."""

    id: str
    error_code: str | None = None
    message: str | None = None
    assigned: int | None = None


class CommitNotice(msgspec.Struct):
    outcomes: list[EventOutcome]
    v: int = SCHEMA_VERSION


_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_notice_decoder = msgspec.msgpack.Decoder(CommitNotice)


def encode(obj: Envelope | CommitNotice) -> bytes:
    return _envelope_encoder.encode(obj)


def decode_envelope(data: bytes) -> Envelope:
    """Raises msgspec.DecodeError / ValidationError for a malformed or unknown event."""
    env = _envelope_decoder.decode(data)
    if env.v > SCHEMA_VERSION:
        raise msgspec.ValidationError(f"unsupported event schema version {env.v}")
    return env


def decode_notice(data: bytes) -> CommitNotice:
    return _notice_decoder.decode(data)


MODEL_EVENTS = (
    LoggedModelCreated, LoggedModelFinalized, LoggedModelTagsSet, LoggedModelTagDeleted,
    LoggedModelParamsLogged, LoggedModelDeleted,
)


ARTIFACT_EVENTS = (ArtifactStored, ArtifactDeleted)

REGISTRY_EVENTS = (
    RegisteredModelCreated, RegisteredModelRenamed, RegisteredModelUpdated, RegisteredModelDeleted,
    RegisteredModelTagSet, RegisteredModelTagDeleted, RegisteredModelAliasSet, RegisteredModelAliasDeleted,
    ModelVersionCreated, ModelVersionUpdated, ModelVersionStageSet, ModelVersionDeleted,
    ModelVersionTagSet, ModelVersionTagDeleted,
)


def partition_key(event: Event) -> str:
    if isinstance(event, TRACE_EVENTS):
        if isinstance(event, TracesDeleted):
            return f"exp:{event.experiment_id}"
        if isinstance(event, TracesLinkedToRun):
            return event.run_id
        return f"trace:{event.trace_id}"  # type: ignore[union-attr]
    if isinstance(event, ARTIFACT_EVENTS):
        owner = event.run_id or (f"model:{event.model_id}" if event.model_id else None)
        return owner or f"artifact:{event.path.split('/', 1)[0]}"
    if isinstance(event, EXPERIMENT_EVENTS):
        return f"exp:{event.experiment_id}"
    if isinstance(event, MODEL_EVENTS):
        return f"model:{event.model_id}"
    if isinstance(event, REGISTRY_EVENTS):
        return f"registry:{event.model_key}"
    return event.run_id  # type: ignore[union-attr]
