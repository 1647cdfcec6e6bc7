"""Execute the notebooks against this checkout's outputs (``make notebooks``; not a DVC stage).

Each notebook in ``notebooks/`` runs top to bottom in a fresh kernel with the repository root as its working
directory; the executed copy, outputs included, goes to ``data/notebooks/<name>.ipynb`` (the sources in git
stay output-free). Open the copies in any notebook viewer, or the sources in Jupyter.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from pipelines import paths
from pipelines.cli import setup_logging
from pipelines.io import staged_outputs

log = logging.getLogger("pipelines.notebooks")
SOURCES = Path("notebooks")
OUT = paths.DATA / "notebooks"


def execute(source: Path, timeout: int = 600) -> object:
    """The notebook at ``source``, executed in a fresh python3 kernel from the repository root."""
    import nbclient
    import nbformat

    nb = nbformat.read(source, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path.cwd())}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.notebooks", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all in notebooks/)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    import nbformat
    from nbclient.exceptions import CellExecutionError

    sources = [SOURCES / n for n in args.names] or sorted(SOURCES.glob("*.ipynb"))
    if not paths.FEATURES.is_file():
        log.error("notebooks read the pipeline's outputs: run `make run` first (%s not found)", paths.FEATURES)
        return 2
    for src in sources:
        t0 = time.perf_counter()
        try:
            nb = execute(src)
        except CellExecutionError as e:
            log.error("%s failed: %s", src, str(e).strip().splitlines()[-1] if str(e).strip() else e)
            return 1
        with staged_outputs() as out:
            nbformat.write(nb, out.path(OUT / src.name))
        log.info("executed %s -> %s in %.0fs", src, OUT / src.name, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
