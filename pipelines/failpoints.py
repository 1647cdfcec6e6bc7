"""Named points where a test can make a process die as a SIGKILL would, to prove recovery from a kill exactly there.

``PIPELINES_FAILPOINT=<name>`` makes the process exit with 137 when it reaches ``failpoint(<name>)``, after logging
which point it was, so a test can assert that the kill landed where it meant it to (not before the work, not after
it). Production never sets the variable; an unset variable costs one dictionary lookup.

Points: ``publish:staged`` (every output written beside its destination, nothing published),
``publish:marker_removed`` (a delivery's old manifest removed, no file replaced yet), ``publish:first_renamed``
(one file replaced, the rest and the manifest not), and the retraining cycle's ``promote:after_delivery``,
``rollback:after_pending`` and ``rollback:after_delivery``.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("pipelines.failpoints")
FAILPOINT_ENV = "PIPELINES_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here at once, as a SIGKILL would, when ``PIPELINES_FAILPOINT`` names this point."""
    if os.environ.get(FAILPOINT_ENV) == name:
        log.error("failpoint %s: exiting as if killed", name)
        logging.shutdown()
        os._exit(137)
