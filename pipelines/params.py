"""Typed, validated view of ``params.yaml``.

Every stage loads its parameters through here. An unknown key, a wrong type or an out-of-range
value stops the stage with a message naming the key path (``generate.truth_replicates``), not a
traceback. The pure libraries define the parameter types they consume (e.g.
``features.simulator.book.SyntheticParams``); this module composes them and owns reading the file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.intake.capabilities import Capabilities, for_source
from features.intake.mapping import TableMapping
from features.intake.tabular_spec import TabularSpec
from features.simulator.book import BookSize, SyntheticParams, WorldParams
from features.snapshots.definitions import FeatureParams
from models.baselines import RuleParams
from models.contact_plan import CapacityParams, PlanParams
from models.drift import DriftParams as DriftCheckParams
from models.promotion import GateParams
from models.segments import CutPoints, SegmentRules, TierParams, ValueParams
from models.training import TrainParams
from models.uplift import UpliftParams
from pipelines import paths
from pipelines.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")
SYNTHETIC_BOOK_DIR = paths.SYNTHETIC_BOOK


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BookParams(Strict):
    """What book we are working on: its as-of (scoring) date, horizon and size profile."""

    profile: str = Field(min_length=1)
    as_of: dt.date
    horizon_days: int = Field(ge=7, le=730)
    profiles: dict[str, BookSize]

    @model_validator(mode="after")
    def _profile_exists(self) -> BookParams:
        if self.profile not in self.profiles:
            raise ValueError(f"profile '{self.profile}' is not one of {sorted(self.profiles)}")
        return self

    @property
    def size(self) -> BookSize:
        return self.profiles[self.profile]


class GenerateParams(WorldParams):
    """params.yaml's ``generate`` section: the simulated world (features/simulator/params.py), field for field."""


class SourceParams(Strict):
    """Where the raw data is and how it is encoded: the contract's tables, or one tabular file."""

    kind: Literal["tables", "tabular"] = "tables"
    dir: str = Field(min_length=1)
    format: Literal["parquet", "csv"]
    encoding: str = Field(min_length=1)
    delimiter: str = Field(min_length=1, max_length=1)
    tables: dict[str, TableMapping] = {}  # bring your own data: per-table mapping (docs/your_data.md)
    tabular: TabularSpec | None = None    # kind: tabular - one file whose columns are the features

    @model_validator(mode="after")
    def _kind_has_its_spec(self) -> SourceParams:
        if self.kind == "tabular" and self.tabular is None:
            raise ValueError("kind: tabular needs a `tabular` section (file, target, ...; docs/your_data.md)")
        if self.kind == "tables" and self.tabular is not None:
            raise ValueError("a `tabular` section is only read with kind: tabular")
        return self

    @model_validator(mode="after")
    def _encoding_known(self) -> SourceParams:
        import codecs

        from features.intake.contract import TABLES

        for enc in [self.encoding, *(m.encoding for m in self.tables.values() if m.encoding)]:
            try:
                codecs.lookup(enc)
            except LookupError as e:
                raise ValueError(f"unknown encoding '{enc}' (use utf-8 or gbk)") from e
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise ValueError(f"tables: {unknown} are not contract tables ({', '.join(TABLES)})")
        return self


class ValidateParams(Strict):
    source: SourceParams
    max_reject_share: float = Field(ge=0, le=1)
    # a required table with fewer rows than this stops the stage (a header-only export is not an empty book)
    min_rows: dict[str, int] = Field(default_factory=dict)
    # a table longer than this is read and checked in chunks of this many rows (customers excepted: they refer to
    # each other), its duplicates found by DuckDB within memory_limit: memory follows the chunk, not the book
    chunk_rows: int = Field(default=2_000_000, ge=1_000)
    memory_limit: str = Field(default="3GB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$")

    @model_validator(mode="after")
    def _known_tables(self) -> ValidateParams:
        unknown = sorted(set(self.min_rows) - {"customers", "policies", "claims", "contacts"})
        if unknown:
            raise ValueError(f"min_rows names tables that do not exist: {unknown}")
        return self


class SparkParams(Strict):
    """Where the Spark engine runs and where it reads and writes (docs/spark.md)."""

    master: str = "local[2]"  # or yarn, k8s://..., spark://...
    shuffle_partitions: int = Field(default=8, ge=1)
    driver_memory: str = "2g"
    executor_memory: str = "4g"
    input: str = ""  # where the validated tables live (a folder or URI Spark reads); "" = data/interim
    output: str = ""  # where the partitioned feature table goes; "" = a scratch folder the stage collects from
    conf: dict[str, str] = Field(default_factory=dict)  # any further spark.* settings


class EngineParams(Strict):
    """Which engine runs the snapshot SQL. DuckDB (default): bounded memory, spilling to a temporary folder
    beyond it. Spark: where the data live, beyond one machine (docs/spark.md)."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    threads: int = Field(ge=1, le=256)
    memory_limit: str = Field(pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$")
    partition_rows: int = Field(ge=10_000)  # customers per partition of the final join
    cache: bool = True  # DuckDB: keep each snapshot's rows; a re-run computes only those whose inputs changed
    spark: SparkParams = Field(default_factory=SparkParams)

    def partitions(self, n_customers: int) -> int:
        return max(1, -(-n_customers // self.partition_rows))


class FeaturesSection(FeatureParams):
    engine: EngineParams


class RulesSection(SegmentRules):
    """Today's rule-based segments: the vocabulary sales teams use and the baseline the models must beat."""

    quadrant: RuleParams


class SegmentParams(Strict):
    """Contact value, ML segments and tiers aligned with the rules, and the contact plan (docs/segments.md)."""

    value: ValueParams
    capacity: CapacityParams
    tiers: TierParams
    cutpoints: Literal["refit", "frozen"]
    frozen: CutPoints | None = None
    plan: PlanParams

    @model_validator(mode="after")
    def _frozen_given(self) -> SegmentParams:
        if self.cutpoints == "frozen" and self.frozen is None:
            raise ValueError("cutpoints: frozen needs the 'frozen' cut-points (copy them from "
                             "data/segments/cutpoints.json of the run whose tiers you want to keep)")
        unknown = set(self.capacity.per_agent_per_week) - self.plan.channels()
        if unknown:
            raise ValueError(f"capacity.per_agent_per_week names channels the plan never uses: {sorted(unknown)}")
        missing = self.plan.channels() - set(self.value.channel_cost)
        if missing:
            raise ValueError(f"value.channel_cost has no cost for the plan's channels {sorted(missing)}")
        return self


class DatabaseParams(Strict):
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    schema_name: str | None = Field(default=None, alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ReasonsParams(Strict):
    """Which rows of the score file carry reasons (TreeSHAP is most of an export's time: docs/benchmarks.md)."""

    customers: Literal["acted", "all"]  # acted: a tier below, or a planned agent-led touch | all: every row
    tiers: list[Literal["P1", "P2", "P3", "P4"]]


class ExportParams(Strict):
    """The CRM score files (docs/score_file.md)."""

    delimiter: str = Field(min_length=1, max_length=1)
    reasons: ReasonsParams
    db: DatabaseParams


class RetrainParams(Strict):
    state_dir: str = Field(min_length=1)     # lock, logs, decision reports, promotion history
    delivery_dir: str = Field(min_length=1)  # the champion's score files, what the CRM reads
    gates: GateParams
    drift: DriftCheckParams


class CalibrateParams(Strict):
    folds: int = Field(ge=2, le=20)
    min_relative_gain: float = Field(ge=0, le=0.5)  # a more flexible calibrator must beat the simpler by this
    seed: int = Field(ge=0)
    slice_min_positives: int = Field(ge=1)  # per-slice metrics are judged (and gated) from this many positives


class RegistryParams(Strict):
    """MLflow registered models: ``<prefix>-purchase``, ``<prefix>-lapse``, ``<prefix>-value``."""

    model_name_prefix: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    input_example_rows: int = Field(ge=1, le=100)


class Params(Strict):
    book: BookParams
    generate: GenerateParams
    validate_: ValidateParams = Field(alias="validate")
    features: FeaturesSection
    rules: RulesSection
    train: TrainParams
    calibrate: CalibrateParams
    uplift: UpliftParams
    segment: SegmentParams
    registry: RegistryParams
    export: ExportParams
    retrain: RetrainParams

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def synthetic_source(self) -> bool:
        """Whether the pipeline reads the synthetic book (else: your own data, and the stages that only make
        sense for the synthetic book, generate and truth_check, skip themselves with a message)."""
        return Path(self.validate_.source.dir).resolve() == SYNTHETIC_BOOK_DIR.resolve()

    @property
    def capabilities(self) -> Capabilities:
        """What this source supports; stages skip or narrow themselves by it (features/intake/capabilities.py)."""
        tab = self.validate_.source.tabular
        return for_source(self.validate_.source.kind, self.synthetic_source,
                          experiment=tab is not None and tab.experiment is not None,
                          target=tab.target_kind if tab is not None else "purchase",
                          other_target=tab.other_target.target_kind if tab and tab.other_target else None)

    def synthetic(self) -> SyntheticParams:
        g = self.generate
        return SyntheticParams(as_of=self.book.as_of, size=self.book.size, horizon_days=self.book.horizon_days,
                               **g.model_dump(exclude={"drift"}), drift=g.drift)


def _format_errors(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} invalid parameter(s):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (typo? see params.yaml comments for the allowed keys)")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required key is missing")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  - {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], path: Path = DEFAULT_PARAMS) -> Params:
    """Validate an already-loaded mapping; raises ConfigError naming every bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, path)) from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file {path} not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, path)
