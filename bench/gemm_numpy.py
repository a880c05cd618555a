"""numpy's fp32 matmul rate, the reference side of bench/gemm.ts (which starts this script).

Prints JSON lines: first {"info": ...} (numpy version, BLAS library and the kernel threadpoolctl
reports, threads), then one
{"shape": [M, N, K, transA, transB], "gflops": median rate, "reps": n, "spread": p90/p10} per shape.
Thread counts come from the environment (OMP/OPENBLAS/MKL_NUM_THREADS), set by the caller before
numpy is imported.
"""

import argparse
import json
import sys
import time


def blas_info():
    """Which BLAS numpy uses and the kernel it picked ('architecture', e.g. SkylakeX or Haswell), from
    threadpoolctl (3.8.0 here); it must be imported after numpy has loaded its BLAS."""
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return {
                "library": lib.get("internal_api"),
                "version": lib.get("version"),
                "kernel": lib.get("architecture"),
                "threads": lib.get("num_threads"),
            }
    return {"library": "unknown", "kernel": "unknown"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", required=True, help="M,N,K,transA,transB;... (transA/transB 0 or 1)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs per shape")
    parser.add_argument("--min-reps", type=int, default=5)
    args = parser.parse_args()
    try:
        import numpy as np
    except ImportError as e:
        print(json.dumps({"error": f"numpy is not importable: {e}"}))
        return 1
    if int(np.__version__.split(".")[0]) < 2:
        print(json.dumps({"error": f"numpy >= 2 is required, found {np.__version__}"}))
        return 1
    try:
        import threadpoolctl  # noqa: F401  (names the OpenBLAS kernel in use)
    except ImportError as e:
        print(json.dumps({"error": f"threadpoolctl is not importable ({e}): pip install threadpoolctl==3.8.0"}))
        return 1
    info = {"numpy": np.__version__, "python": sys.version.split()[0], **blas_info()}
    print(json.dumps({"info": info}), flush=True)
    rng = np.random.default_rng(0)
    for spec in args.shapes.split(";"):
        m, n, k, ta, tb = (int(v) for v in spec.split(","))
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        a = a.T if ta else a
        b = b.T if tb else b
        out = np.empty((m, n), np.float32)
        np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
        np.matmul(a, b, out=out)
        times = []
        start = time.perf_counter()
        while len(times) < args.min_reps or time.perf_counter() - start < args.min_time:
            t = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - t)
        times.sort()
        median = times[len(times) // 2]
        p90, p10 = times[min(len(times) - 1, int(0.9 * len(times)))], times[int(0.1 * len(times))]
        rate = {"shape": [m, n, k, ta, tb], "gflops": 2 * m * n * k / median / 1e9, "reps": len(times), "spread": p90 / p10}
        print(json.dumps(rate), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
