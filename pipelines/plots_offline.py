"""``dvc plots show`` as a page that opens offline, and a headless-browser check that every plot draws its data.

DVC's own page loads Vega from a CDN, so offline (or behind a proxy) it stays blank. This writes an HTML template
with the Vega, Vega-Lite and Vega-Embed bundle inlined (``vl-convert-python`` ships it, so no network is needed)
and renders the plots through ``dvc plots show --html-template``: the same specs and templates, as SVG.
``--check`` then opens the page in headless Chromium and counts the marks each plot drew::

    make plots                                          # dvc_plots/index.html, opens offline
    .venv/bin/python -m pipelines.plots_offline --check  # and checks it in Chromium (apt-get install chromium)

Not a DVC stage: it reads the workspace's plots and writes ``dvc_plots/`` (git-ignored), like ``dvc plots show``.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.cli import setup_logging
from pipelines.errors import UserError

log = logging.getLogger("pipelines.plots_offline")
OUT = Path("dvc_plots")
# DVC's plot divs call vegaEmbed(el, spec); render as SVG so the marks are in the DOM a browser check can read
SNIPPET = """window.vega = vega; window.vegaLite = vegaLite;
window.vegaEmbed = function (el, spec, opts) {
  return vegaEmbed(el, spec, Object.assign({renderer: "svg", actions: false}, opts || {}));
};"""
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Contact priority: DVC plots (offline)</title>
<script>{bundle}</script>
<style>body{{font-family:system-ui,sans-serif;margin:1em}} table{{border-spacing:15px}}</style>
</head><body><h1>DVC plots (offline: Vega bundled in the page)</h1>
{{plot_divs}}
</body></html>"""
PLOT_DIV = re.compile(r'<div id="([^"]+)"[^>]*>')
# a data mark: an SVG shape Vega drew for a datum (axes, titles and legends are <g> groups, not counted)
MARK = re.compile(r'<(?:path|line|rect)\b[^>]*role="graphics-symbol"')


def template() -> str:
    """An HTML template for ``dvc plots show --html-template`` with the Vega libraries inlined."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(SNIPPET).replace("</script", "<\\/script")
    clash = [p for p in ("{plot_divs}", "{scripts}", "{refresh_tag}") if p in bundle]
    if clash:  # DVC replaces these literally anywhere in the template
        raise UserError(f"the Vega bundle of this vl-convert version contains DVC's placeholders {clash}")
    return PAGE.format(bundle=bundle)


def dvc() -> str:
    found = Path(sys.executable).parent / "dvc"
    return str(found) if found.exists() else "dvc"


def render(out: Path = OUT, cwd: Path = Path(".")) -> Path:
    """``dvc plots show`` with the offline template; returns the page."""
    with tempfile.TemporaryDirectory() as tmp:
        tmpl = Path(tmp) / "offline.html"
        tmpl.write_text(template(), encoding="utf-8")
        done = subprocess.run([dvc(), "plots", "show", "--html-template", str(tmpl), "-o", str(out)], cwd=cwd,
                              capture_output=True, text=True, env=os.environ | {"DVC_NO_ANALYTICS": "1"}, timeout=300)
    if done.returncode != 0:
        raise UserError(f"dvc plots show failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    page = (cwd / out / "index.html").resolve()
    log.info("wrote %s (%d KiB): opens offline", page, page.stat().st_size // 1024)
    return page


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    raise UserError("no Chromium found for the browser check: apt-get install chromium (or set CHROMIUM=/path)")


def browser_dom(page: Path, seconds: int = 20) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", f"--virtual-time-budget={seconds * 1000}", "--dump-dom", page.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    if done.returncode != 0 or "<body" not in done.stdout:
        raise UserError(f"headless Chromium could not render {page} ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def marks_per_plot(dom: str) -> dict[str, int]:
    """Data marks drawn inside each DVC plot div (bars, points, line paths, rules)."""
    found = list(PLOT_DIV.finditer(dom))
    out = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(dom)
        out[html.unescape(m.group(1))] = len(MARK.findall(dom, m.end(), end))
    return out


def check(page: Path) -> dict[str, int]:
    """Every plot on the page drew at least one mark in a real browser, or a UserError names the empty ones."""
    marks = marks_per_plot(browser_dom(page))
    empty = sorted(k for k, n in marks.items() if n == 0)
    if not marks or empty:
        raise UserError(f"{page}: {len(empty)} of {len(marks)} plots drew nothing in Chromium: {empty}")
    return marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.plots_offline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder for index.html (default: dvc_plots)")
    parser.add_argument("--check", action="store_true", help="open the page in headless Chromium and count marks")
    args = parser.parse_args(argv)
    setup_logging(False)
    try:
        page = render(args.out)
        if args.check:
            for plot, n in check(page).items():
                log.info("%-45s %5d marks drawn", plot, n)
            log.info("every plot drew its data in headless Chromium")
    except UserError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
