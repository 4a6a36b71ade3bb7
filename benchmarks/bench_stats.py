"""Timing of the statistics that multibone writes itself: DeLong and the bootstrap.

Usage::

    python benchmarks/bench_stats.py [--repeats 5] [--out benchmarks/RESULTS_stats.md]

* DeLong AUC + variance (``delong_auc``) and the paired test (``delong_paired``)
  at 1e3, 1e4 and 1e5 cases, against ``sklearn.metrics.roc_auc_score`` (AUC
  only, no variance) as a ratio.
* Bootstrap of the AUC, 5,000 stratified resamples of 1,000 cases: the
  vectorised rank-based computation (``Bootstrap.auc_samples``) against a naive
  Python loop of ``roc_auc_score`` on resampled copies, timed on a subsample of
  resamples and extrapolated to 5,000.

Each figure is the median of ``--repeats`` runs. Synthetic data, fixed seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from multibone.evaluation import Bootstrap, delong_auc, delong_paired

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--naive-resamples",
        type=int,
        default=250,
        help="resamples timed for the naive loop (extrapolated to 5,000)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_stats.md"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    rows = []
    for n in (1_000, 10_000, 100_000):
        y = rng.integers(0, 2, n)
        s = rng.normal(size=n) + y
        s2 = s + rng.normal(size=n)
        t_dl = _median_time(lambda y=y, s=s: delong_auc(y, s), args.repeats)
        t_pair = _median_time(lambda y=y, s=s, s2=s2: delong_paired(y, s, s2), args.repeats)
        t_sk = _median_time(lambda y=y, s=s: roc_auc_score(y, s), args.repeats)
        rows.append((n, t_dl, t_pair, t_sk))
        print(
            f"n={n:>7d}  delong_auc {t_dl * 1e3:8.2f} ms  delong_paired {t_pair * 1e3:8.2f} ms  "
            f"sklearn AUC {t_sk * 1e3:8.2f} ms  ratio {t_dl / t_sk:5.2f}"
        )

    n, b = 1_000, 5_000
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 2)
    t_vec = _median_time(lambda: Bootstrap(y, n_boot=b, seed=1).auc_samples(s), args.repeats)
    k = args.naive_resamples
    small = Bootstrap(y, n_boot=k, seed=1)
    idx = list(small.indices())

    def naive() -> None:
        for i in idx:
            roc_auc_score(y[i], s[i])

    t_naive = _median_time(naive, max(1, args.repeats // 2)) * b / k
    print(
        f"bootstrap {b} x {n}: vectorised {t_vec:.2f} s, naive sklearn loop "
        f"{t_naive:.1f} s (extrapolated from {k}), speed-up {t_naive / t_vec:.0f}x"
    )

    machine = (
        f"{_cpu_name()}, {os.cpu_count()} logical CPUs visible, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    lines = [
        "## Statistics (evaluation layer)",
        "",
        f"Machine: {machine}. A 2-core CPU sandbox shared with other jobs while this ran, so "
        "absolute times are pessimistic and noisy; ratios are more stable. Median of "
        f"{args.repeats} runs; synthetic data (`python benchmarks/bench_stats.py`).",
        "",
        "| cases | delong_auc (AUC + variance) | delong_paired (2 models) | "
        "sklearn roc_auc_score (AUC only) | delong_auc / sklearn |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n_, a, p, sk in rows:
        lines.append(
            f"| {n_:,} | {a * 1e3:.2f} ms | {p * 1e3:.2f} ms | {sk * 1e3:.2f} ms | {a / sk:.2f} |"
        )
    lines += [
        "",
        "| bootstrap of the AUC | time |",
        "|---|---:|",
        f"| 5,000 stratified resamples x 1,000 cases, vectorised rank-based (`Bootstrap.auc_samples`) "
        f"| {t_vec:.2f} s |",
        f"| same, naive loop of `roc_auc_score` on resampled copies (timed on {k}, x{b // k}) "
        f"| {t_naive:.1f} s |",
        f"| speed-up | {t_naive / t_vec:.0f}x |",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
