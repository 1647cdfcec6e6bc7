"""What ``spark-submit`` runs on a cluster (it takes a file, not ``-m``): the features stage or the scoring job.

    spark-submit --master yarn --archives env.tar.gz#env deploy/spark_submit.py features --params params.yaml
    spark-submit --master yarn --archives env.tar.gz#env deploy/spark_submit.py score \
        --features hdfs:///lake/features --output hdfs:///lake/scores

docs/spark.md has the whole recipe (the environment, the settings that matter).
"""

import sys

from pipelines import features, spark_score

JOBS = {"features": features.cli, "score": spark_score.cli}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in JOBS:
        sys.stderr.write(f"usage: spark-submit ... deploy/spark_submit.py {{{'|'.join(JOBS)}}} [options]\n")
        sys.exit(2)
    sys.exit(JOBS[sys.argv[1]](sys.argv[2:]))
