"""Time and peak memory of one planning week's allocation at 1M and 5M customers (docs/benchmarks.md).

Each run is a fresh subprocess (so peak RSS is its own), the variants interleaved and repeated; the table
reports medians. The problem is shaped like the default book's, scaled: seven channels, agent-led capacity of
``customers / 200`` agents x (phone 15, visit 3, event 1) a week, every customer with an agent, 10% of the
touches blocked (consent, caps, interval), values drawn so that about a third of customers have a positive
agent-led option.

    .venv/bin/python -m benchmarks.allocation_bench --sizes 1000000 5000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

log = logging.getLogger("benchmarks.allocation_bench")
CHANNELS = ("phone", "sms", "wechat", "email", "letter", "visit", "event")
PER_AGENT = {"phone": 15, "visit": 3, "event": 1}


def problem(n: int, seed: int = 0, agents: bool = True):  # type: ignore[no-untyped-def]
    from models import allocation

    rng = np.random.default_rng(seed)
    base = rng.lognormal(0, 1.2, n)[:, None]
    scale = np.array([12.0, 0.4, 1.2, 0.2, 3.0, 90.0, 120.0])
    cost = np.array([8, 0.1, 0.5, 0.2, 5, 150, 300])
    value = (base * scale[None, :] * rng.lognormal(0, 0.5, (n, len(CHANNELS))) - cost[None, :]).astype(np.float64)
    value[rng.random(value.shape) < 0.1] = -np.inf
    n_agents = max(n // 200, 1)
    cap = {c: k * n_agents for c, k in PER_AGENT.items()}
    agent = rng.integers(0, n_agents, n) if agents else None
    return allocation.Problem(value, CHANNELS, cap, agent, dict(PER_AGENT) if agents else {})


def run_one(n: int, method: str, agents: bool) -> dict[str, float]:
    from models import allocation

    p = problem(n, agents=agents)
    start = time.perf_counter()
    choice = allocation.solve_exact(p) if method == "exact" else allocation.solve_prices(p)[0]
    seconds = time.perf_counter() - start
    assert not allocation.check(p, choice)
    return {"seconds": seconds, "objective": allocation.objective(p, choice),
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["prices", "exact"], choices=["prices", "exact"])
    ap.add_argument("--no-agents", action="store_true", help="channel capacities only (no per-agent capacity)")
    ap.add_argument("--child", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(int(args.child[0]), args.child[1], not args.no_agents)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    for r in range(args.repeats):
        for n in args.sizes:
            for m in args.methods:  # interleaved: a slow phase of the machine hits every variant alike
                cmd = [sys.executable, "-m", "benchmarks.allocation_bench", "--child", str(n), m]
                if args.no_agents:
                    cmd.append("--no-agents")
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((n, m), []).append(res)
                log.info("repeat %d: %s customers, %s: %.1f s, peak %.2f GiB, objective %.0f", r + 1, f"{n:,}", m,
                         res["seconds"], res["peak_gib"], res["objective"])
    log.info("| customers | solver | median s | runs (s) | peak GiB | objective |")
    for (n, m), rs in results.items():
        secs = [x["seconds"] for x in rs]
        log.info("| %s | %s | %.1f | %s | %.2f | %.0f |", f"{n:,}", m, statistics.median(secs),
                 ", ".join(f"{s:.1f}" for s in secs), max(x["peak_gib"] for x in rs), rs[0]["objective"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
