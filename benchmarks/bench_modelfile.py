"""Cost of the safe model format (issue #17): skops (checked load) vs joblib, per stacker family.

Prints a Markdown table (median of 5 saves / loads of one stacker fitted on 200 synthetic
patients x 5 features) for benchmarks/RELIABILITY.md.
Run: OMP_NUM_THREADS=1 python benchmarks/bench_modelfile.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from multibone.io.modelfile import dump_model, load_model
from multibone.stacking import StackingConfig, fit_stacker


def median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {
            "p_a": rng.random(n),
            "p_b": rng.random(n),
            "age": rng.normal(50, 15, n),
            "sex_male": rng.integers(0, 2, n).astype(float),
            "crp_abnormal": rng.integers(0, 2, n).astype(float),
        }
    )
    y = (X.p_a + rng.normal(0, 0.3, n) > 0.5).astype(int).to_numpy()
    d = Path(tempfile.mkdtemp())
    sk, jl = d / "s.skops", d / "s.joblib"
    print(
        "| family | skops file | joblib file | skops save | joblib save | skops load (checked) | joblib load |"
    )
    print("|---|---|---|---|---|---|---|")
    for fam in ("rf", "lightgbm", "xgboost", "lr"):
        st = fit_stacker(X, y, np.arange(n), StackingConfig(family=fam, n_iter=1), fam)
        s1 = median_seconds(lambda st=st: dump_model(st, sk))
        s2 = median_seconds(lambda st=st: joblib.dump(st, jl))
        l1 = median_seconds(lambda: load_model(sk))
        l2 = median_seconds(lambda: joblib.load(jl))
        print(
            f"| {fam} | {os.path.getsize(sk) / 1e3:.0f} kB | {os.path.getsize(jl) / 1e3:.0f} kB "
            f"| {s1 * 1e3:.0f} ms | {s2 * 1e3:.0f} ms | {l1 * 1e3:.0f} ms | {l2 * 1e3:.0f} ms |"
        )


if __name__ == "__main__":
    main()
