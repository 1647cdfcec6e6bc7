"""Headline metrics: flat, numeric, and tolerant of the keys a source's report does not have."""

from __future__ import annotations

from pipelines import headline, paths, tracking


def test_headline_is_flat_numbers_and_skips_missing_and_non_finite() -> None:
    report = {"holdout_evaluation": {"pooled": {"qini_uplift": 0.03, "qini_propensity": float("nan")}}}
    out = headline.headline("uplift", report)
    assert out == {"qini": 0.03}


def test_booleans_become_numbers_and_every_stage_has_short_names() -> None:
    out = headline.headline("train", {"models": {"purchase": {"logistic": {"roc_auc": 0.7}}}})
    assert out == {"logistic_auc": 0.7}
    shares = {"tables": {"customers": {"reject_share": 0.01}, "contacts": {"reject_share": 0.03}}}
    assert headline.headline("validation", shares) == {"reject_share": 0.03}
    for stage, keys in headline.HEADLINES.items():
        assert 0 < len(keys) <= 4, stage
        assert all(len(k) <= 16 and "." not in k for k in keys), stage
    assert sum(len(k) for keys in headline.HEADLINES.values() for k in keys) <= 160, "too wide for dvc metrics show"


def test_skipped_report_gives_an_empty_headline() -> None:
    for stage in headline.HEADLINES:
        assert headline.headline(stage, {"skipped": "no truth"}) == {}


def test_run_name_and_dvc_experiment_tags(monkeypatch) -> None:  # noqa: ANN001
    assert tracking.run_name("train", "2026-09-30", "0123456789abcdef") == "pipeline 2026-09-30 0123456"
    assert tracking.run_name("retrain", "", "0123456789abcdef-dirty") == "retrain 0123456-dirty"
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert tracking.dvc_experiment() == {}
    monkeypatch.setenv("DVC_EXP_NAME", "leaves15")
    assert tracking.dvc_experiment() == {"dvc_experiment": "leaves15"}


def test_summary_line_reads_the_headlines(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from pipelines import summary

    monkeypatch.chdir(tmp_path)
    assert summary.line().startswith("no results yet")
    paths.METRICS.mkdir(parents=True)
    paths.REPORTS.mkdir(parents=True)
    paths.metrics("segments").write_text('{"P1": 2494, "week1_touches": 31598}')
    paths.report("segments").write_text('{"scoring": {"tiers": {"P1": 2494, "P2": 7483, "P3": 1, "P4": 2}}}')
    paths.metrics("calibration").write_text('{"purchase_auc": 0.7377, "lapse_auc": 0.7757}')
    text = summary.line()
    assert "\n" not in text and "P1 2,494" in text and "purchase 0.738" in text and "31,598 touches" in text
