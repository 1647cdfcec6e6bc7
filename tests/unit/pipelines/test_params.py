from __future__ import annotations

import copy

import pytest

from pipelines.errors import ConfigError
from pipelines.params import load_params, parse_params
from tests.conftest import REPO, repo_params_raw


def test_repo_params_load_into_typed_objects() -> None:
    p = load_params(REPO / "params.yaml")
    assert p.book.size.n_customers >= 40_000  # the default profile is the ~50k book
    assert p.book.profiles["tiny"].n_customers <= 3_000
    sp = p.synthetic()
    assert sp.as_of == p.book.as_of and sp.horizon_days == p.book.horizon_days


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda r: r["generate"].__setitem__("trut_replicates", 3), "generate.trut_replicates", "unknown key"),
        (lambda r: r["generate"].__setitem__("truth_replicates", "many"), "generate.truth_replicates", "integer"),
        (lambda r: r["generate"].__setitem__("holdout_share", 1.5), "generate.holdout_share", "less than"),
        (lambda r: r["book"].__setitem__("as_of", "2026-13-45"), "book.as_of", "date"),
        (lambda r: r["book"].__setitem__("profile", "huge"), "book", "profile 'huge'"),
        (lambda r: r["validate"]["source"].__setitem__("format", "xlsx"), "validate.source.format", "parquet"),
        (lambda r: r["validate"]["source"].__setitem__("encoding", "klingon"), "validate.source", "encoding"),
        (lambda r: r["generate"]["drift"].__setitem__("channel_response", {"fax": 0.2}), "generate.drift", "fax"),
        (lambda r: r.pop("validate"), "validate", "missing"),
    ],
)
def test_bad_params_name_the_key(edit, key: str, words: str) -> None:
    raw = copy.deepcopy(repo_params_raw())
    edit(raw)
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    msg = str(e.value)
    assert key in msg and words in msg, msg


def test_missing_params_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_malformed_yaml_is_a_clear_error(tmp_path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("book: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(f)


def test_loading_the_parameters_loads_no_model_library() -> None:
    """Every stage loads its parameters; the stages that fit nothing (generate, validate, features) must not pay
    for LightGBM, scikit-learn, SciPy, Optuna or MLflow (about 1 s a process), which the model modules import where
    they are used. A fresh interpreter: this test process has long imported them all."""
    import subprocess
    import sys

    heavy = ("lightgbm", "sklearn", "scipy", "optuna", "mlflow")
    code = ("import sys, pipelines.params, pipelines.generate, pipelines.validate, pipelines.features; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded by the parameters or a stage that fits nothing: {out.stdout.strip()}"
