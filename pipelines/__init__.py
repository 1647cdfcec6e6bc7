"""The wiring: one thin CLI per DVC stage, and the small modules they share."""

import warnings

# pandera imports pyspark.pandas whenever PySpark is installed (the Spark engine's dependency), and PySpark warns
# on import that it does not yet support pandas 3. The Spark engine's tests pass on pandas 3
# (tests/unit/pipelines/test_spark.py); the warning would otherwise open every stage's log.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
