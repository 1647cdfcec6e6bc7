"""The test suite. Imported before any conftest or test module, so this is where the test processes' environment
is fixed before LightGBM (OpenMP) loads.

``OMP_WAIT_POLICY=PASSIVE``: the suite runs two xdist workers on two cores, and each worker's stages train
LightGBM with two OpenMP threads. OpenMP's default spin-waiting then burns the cores the other process needs:
measured while the suite ran, 200 rounds on 26k rows took 278 s spinning against 6 s passive, and the retrain
test's 26k-row purchase model took 3 min 22 s. Stages started by tests inherit it; a value set outside wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
