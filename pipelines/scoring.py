"""Load the trained model set (native LightGBM text models, meta.json, JSON calibrators) and score snapshots."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.intake.capabilities import Capabilities
from features.snapshots.definitions import LABELS
from models import gbm
from models.lgbm import lgb
from pipelines import paths
from pipelines.errors import require

MODELS, CALIBRATORS, UPLIFT = paths.MODELS, paths.CALIBRATORS, paths.UPLIFT
PREDICT_CHUNK_ROWS = 250_000  # rows per design matrix when scoring (predict_each)


@dataclass(frozen=True)
class LoadedModel:
    booster: lgb.Booster
    spec: gbm.FeatureSpec
    meta: dict[str, Any]
    calibrator: dict[str, Any] | None

    def predict(self, df: pd.DataFrame, X: np.ndarray | None = None) -> np.ndarray:
        """The model's output on ``df``; ``X`` its ``gbm.matrix`` if already built (``predict_each``)."""
        return gbm.predict_output(self.booster, self.spec, df, self.meta.get("target_transform"), self.calibrator, X)


def predict_each(loaded: dict[str, LoadedModel], df: pd.DataFrame,
                 chunk_rows: int = PREDICT_CHUNK_ROWS) -> dict[str, np.ndarray]:
    """Each model's output on ``df``, in chunks of ``chunk_rows`` rows, one design matrix per chunk shared by
    consecutive models with the same feature spec (the trained set shares one: at 1M rows each matrix took 2-3 s
    to build).

    A row's prediction does not depend on its batch, so the chunks change nothing but memory: a whole-snapshot
    matrix at 5M rows was 5 GB (131 float64 columns), a chunk's is 0.26 GB."""
    n = len(df)
    out = {name: np.empty(n, dtype=np.float64) for name in loaded}
    for start in range(0, n, chunk_rows) if n else (0,):
        part = df.iloc[start:start + chunk_rows]
        spec, X = None, None
        for name, model in loaded.items():
            if model.spec != spec:
                X = None  # free the last one before building the next
                spec, X = model.spec, gbm.matrix(part, model.spec)
            out[name][start:start + len(part)] = model.predict(part, X)
    return out


def load_model(name: str, models: Path = MODELS, calibrators: Path = CALIBRATORS) -> LoadedModel:
    files = [models / name / "model.txt", models / name / "meta.json"]
    if name != "value":
        files.append(calibrators / f"{name}.json")
    require(files, "run the train and calibrate stages first (dvc repro calibrate)")
    meta = json.loads(files[1].read_text(encoding="utf-8"))
    cal = json.loads(files[2].read_text(encoding="utf-8")) if name != "value" else None
    return LoadedModel(lgb.Booster(model_file=str(files[0])), gbm.FeatureSpec.from_dict(meta["features"]), meta, cal)


def scoring_rows(feats: pd.DataFrame, as_of: dt.date, caps: Capabilities) -> pd.DataFrame:
    """The rows to score at the as-of date: the as-of snapshot of a book; of a tabular source its score file's
    rows, or without one every row of the file (each with its ``role``: train, valid, calib or test)."""
    if caps.snapshots:
        return feats[pd.to_datetime(feats["snapshot_date"]) == pd.Timestamp(as_of)]
    if (feats["role"] == "score").any():
        return feats[feats["role"] == "score"]
    return feats[feats["role"].isin(["train", "valid", "calib", "test"])]


def read_snapshots(path: Path, dates: list[dt.date]) -> pd.DataFrame:
    """The rows of these snapshot dates from the feature table at ``path``, in the table's order. Parquet's
    row-group statistics skip the rest: the default book's as-of snapshot reads in a twentieth of the time of the
    whole table, and at 5M customers the whole table (7M rows x 136 columns) no longer has to fit in memory."""
    return _float_labels(pd.read_parquet(path, filters=[("snapshot_date", "in", list(dates))]))


def _float_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Labels as floats, as they read from the whole table with the unlabelled as-of snapshot among them (an
    integer column with nulls): the same dtypes whichever snapshots a stage reads, so the same models and files.

    Only the label columns are replaced: ``astype`` with a mapping rebuilt the frame one block per column (136),
    and every column a stage then added warned of a fragmented frame and cost a little more."""
    ints = [c for c in LABELS if c in df and df[c].dtype.kind in "iu"]
    return df.assign(**{c: df[c].astype("float64") for c in ints}) if ints else df


def snapshot_dates(path: Path) -> list[dt.date]:
    """The feature table's snapshot dates, in order (one column read)."""
    return sorted(pc.unique(pq.read_table(path, columns=["snapshot_date"]).column(0)).to_pylist())


def read_labelled(path: Path, caps: Capabilities, dates: list[dt.date] | None = None) -> pd.DataFrame:
    """A book's labelled snapshot rows (those whose purchase label has matured), in the table's order, of
    ``dates`` only when given; the whole table of any other source. Training never uses the unlabelled as-of
    snapshot, which at 5M customers is two thirds of the table."""
    if caps.snapshots:
        rows = pc.field("purchase_h").is_valid()
        if dates is not None:  # filtered while reading: filtering the frame afterwards copies all of it
            rows = rows & pc.field("snapshot_date").isin(pa.array(list(dates), pa.date32()))
        return _float_labels(pd.read_parquet(path, filters=rows))
    return pd.read_parquet(path)


def read_scoring_rows(path: Path, as_of: dt.date, caps: Capabilities) -> pd.DataFrame:
    """``scoring_rows`` of the feature table at ``path``, reading a book's as-of snapshot only."""
    if caps.snapshots:
        return read_snapshots(path, [as_of])
    return scoring_rows(pd.read_parquet(path), as_of, caps)


def read_customers(path: Path, as_of: dt.date, customer_ids: list[str]) -> pd.DataFrame:
    """The as-of snapshot's rows of these customers, in the table's order, with the dtypes the whole snapshot
    reads with (``_as_whole``). Values, and so reasons rendered from them, are those of ``read_snapshots``; at 5M
    customers a fifth of the snapshot is read instead of all of it (the export explains the customers acted on)."""
    on_day = ("snapshot_date", "in", [as_of])
    ids = list(customer_ids)  # Arrow refuses an empty set: no day then, which reads no row either
    rows = pd.read_parquet(path, filters=[on_day, ("customer_id", "in", ids)] if ids else
                           [("snapshot_date", "in", [])])
    return _as_whole(rows, _snapshot_nulls(path, as_of, pq.read_schema(path)))


def _snapshot_nulls(path: Path, day: dt.date, schema: pa.Schema) -> dict[str, int]:
    """Nulls per integer or boolean column of ``schema`` over the whole snapshot ``day`` (one streamed pass over
    those columns): pandas reads such a column wider (float64, objects) when the rows read hold a null."""
    import pyarrow.dataset as ds

    narrow = [fld.name for fld in schema if pa.types.is_integer(fld.type) or pa.types.is_boolean(fld.type)]
    nulls = dict.fromkeys(narrow, 0)
    if narrow:
        scanner = ds.dataset(str(path), format="parquet").scanner(columns=narrow,
                                                                  filter=pc.field("snapshot_date") == day)
        for batch in scanner.to_batches():
            for c, arr in zip(batch.schema.names, batch.columns, strict=True):
                nulls[c] += arr.null_count
    return nulls


def _as_whole(rows: pd.DataFrame, nulls: dict[str, int]) -> pd.DataFrame:
    """``rows`` of a snapshot typed as the whole snapshot reads: the columns with nulls there widened."""
    widened = {c: rows[c].astype("float64" if rows[c].dtype.kind in "iu" else "object")
               for c, n in nulls.items() if n and c in rows and rows[c].dtype.kind in "iub"}
    return _float_labels(rows.assign(**widened) if widened else rows)


def snapshot_chunks(path: Path, day: dt.date, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of snapshot ``day``, in the table's order, ``chunk_rows`` at a time (the last chunk fewer), each
    typed as ``read_snapshots`` types the whole snapshot and indexed from 0. Row groups of other days only are
    skipped by their statistics. At 5M customers the snapshot is 136 columns x 5M rows, 6 GB in pandas; a stage
    whose work is per row (scoring) holds one chunk of it (and a row group) instead."""
    f = pq.ParquetFile(path)
    at = f.schema_arrow.get_field_index("snapshot_date")
    on_day = pa.scalar(day, f.schema_arrow.field(at).type)
    nulls = _snapshot_nulls(path, day, f.schema_arrow)
    pending: list[pa.Table] = []
    for g in range(f.metadata.num_row_groups):
        if not _may_hold(f.metadata.row_group(g).column(at), day):
            continue
        group = f.read_row_group(g)
        pending.append(group.filter(pc.equal(group.column("snapshot_date"), on_day)))
        while sum(t.num_rows for t in pending) >= chunk_rows:
            table = pa.concat_tables(pending)
            rest = table.slice(chunk_rows)
            pending = [rest] if rest.num_rows else []
            yield _as_whole(table.slice(0, chunk_rows).to_pandas(), nulls)
    if sum(t.num_rows for t in pending):
        yield _as_whole(pa.concat_tables(pending).to_pandas(), nulls)


def _may_hold(column: pq.ColumnChunkMetaData, day: dt.date) -> bool:
    stats = column.statistics
    if stats is None or not stats.has_min_max:
        return True
    return bool(stats.min <= day <= stats.max)


def first_scoring_rows(path: Path, as_of: dt.date, caps: Capabilities, n: int) -> pd.DataFrame:
    """The ``n`` scoring rows with the smallest customer ids, in id order (a registered model's input example).

    A book's as-of snapshot is read twice, its ids and then those ``n`` rows (``read_customers``: typed as the
    whole snapshot, so the model signature is the same), never whole: reading it and sorting it was 5M x 136
    twice over at 5M customers, for five rows."""
    if not caps.snapshots:
        return read_scoring_rows(path, as_of, caps).sort_values("customer_id").head(n)
    ids = pd.read_parquet(path, columns=["customer_id"], filters=[("snapshot_date", "in", [as_of])])["customer_id"]
    return read_customers(path, as_of, ids.sort_values().head(n).tolist()).sort_values("customer_id")


SCORED = ("purchase", "lapse", "value")


def score_with(loaded: dict[str, LoadedModel], df: pd.DataFrame) -> pd.DataFrame:
    """Calibrated p_purchase and p_lapse, and expected premium if bought, for each row of ``df``.

    p_lapse is 0 for customers with no policy in force: there is nothing to lapse. The one scoring
    function of both engines (``pipelines.spark_engine.score_frame`` applies it per batch).
    """
    out = pd.DataFrame(index=df.index)
    pred = predict_each({name: loaded[name] for name in SCORED}, df)
    out["p_purchase"] = pred["purchase"]
    holder = df["n_inforce"].fillna(0).to_numpy(float) > 0
    out["p_lapse"] = np.where(holder, pred["lapse"], 0.0)
    out["expected_premium"] = np.maximum(pred["value"], 0.0)
    return out


def score(df: pd.DataFrame, models: Path = MODELS, calibrators: Path = CALIBRATORS) -> pd.DataFrame:
    """``score_with`` the model set saved in ``models`` and ``calibrators``."""
    return score_with({name: load_model(name, models, calibrators) for name in SCORED}, df)


def model_texts(models: Path = MODELS, calibrators: Path = CALIBRATORS) -> dict[str, dict[str, str | None]]:
    """The model set's native files as text (model, meta, calibrator), to ship to where the rows are."""
    load_model("purchase", models, calibrators)  # the same clear errors for missing files
    return {name: {"model": (models / name / "model.txt").read_text(encoding="utf-8"),
                   "meta": (models / name / "meta.json").read_text(encoding="utf-8"),
                   "calibrator": None if name == "value" else
                   (calibrators / f"{name}.json").read_text(encoding="utf-8")} for name in SCORED}


def models_from_texts(texts: dict[str, dict[str, str | None]]) -> dict[str, LoadedModel]:
    """The ``LoadedModel``s of ``model_texts``: the same objects ``load_model`` builds from the files."""
    out = {}
    for name, t in texts.items():
        meta = json.loads(t["meta"] or "{}")
        out[name] = LoadedModel(lgb.Booster(model_str=t["model"]), gbm.FeatureSpec.from_dict(meta["features"]), meta,
                                json.loads(t["calibrator"]) if t["calibrator"] else None)
    return out



def load_effect_models(folder: Path = UPLIFT) -> dict[str, Any] | None:
    """The uplift stage's effect learners (purchase, lapse), or None when the stage skipped (no history)."""
    from models import uplift

    out: dict[str, Any] = {}
    for outcome in uplift.OUTCOMES:
        model, meta = folder / outcome / "model.txt", folder / outcome / "meta.json"
        if not (model.is_file() and meta.is_file()):
            continue  # an experiment source has a purchase (target) learner only
        out[outcome] = uplift.EffectModel.from_meta(lgb.Booster(model_file=str(model)),
                                                    json.loads(meta.read_text(encoding="utf-8")))
    return out if "purchase" in out else None
