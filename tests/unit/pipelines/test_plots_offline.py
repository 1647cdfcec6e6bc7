"""The offline DVC plots page: its template carries Vega itself, and the mark count reads what a browser drew."""

from __future__ import annotations

import pytest

from pipelines import plots_offline
from pipelines.errors import UserError


def test_the_template_bundles_vega_and_keeps_only_dvcs_plot_placeholder() -> None:
    page = plots_offline.template()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # DVC adds no CDN script tags
    assert "cdn.jsdelivr" not in page and len(page) > 300_000  # the libraries themselves, not links to them
    assert page.count("</script>") == 1  # the bundle cannot close its own script tag early


def test_marks_are_counted_per_plot_div_and_axes_legends_do_not_count() -> None:
    dom = ('<div id="a" class="vega-embed"><svg><g role="graphics-symbol" aria-roledescription="axis"></g>'
           '<path role="graphics-symbol" aria-roledescription="bar"/><path role="graphics-symbol"/></svg></div>'
           '<div id="b"><svg><g role="graphics-symbol" aria-roledescription="legend"></g></svg></div>')
    assert plots_offline.marks_per_plot(dom) == {"a": 2, "b": 0}


def test_without_chromium_the_check_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CHROMIUM", raising=False)
    with pytest.raises(UserError, match="apt-get install chromium"):
        plots_offline.chromium()
