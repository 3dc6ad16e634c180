"""Reference GEMM rate: numpy float32 matmul (OpenBLAS sgemm in the usual wheels), n x n x n, best of
several runs after a warm-up. Prints one JSON line; {"skipped": why} when numpy is missing.
The bench runs it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its own kernel
for this CPU; "corename" says which one it ran. Usage: python3 reference-gemm.py [n] [runs]"""
import ctypes
import glob
import json
import os
import sys
import time

try:
    import numpy as np
except ImportError:
    print(json.dumps({"skipped": "numpy is not installed for " + sys.executable}))
    sys.exit(0)


def blas_info():
    """BLAS name/version from numpy's build config; core type and threads from threadpoolctl or the
    OpenBLAS library itself (its get_corename / get_num_threads entry points, name-mangled per wheel)."""
    info = {"numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f'{blas.get("name")} {blas.get("version")}'
    except Exception:
        pass
    try:
        from threadpoolctl import threadpool_info

        for p in threadpool_info():
            if p.get("internal_api") in ("openblas", "mkl", "blis"):
                info.update(corename=p.get("architecture"), blas_threads=p.get("num_threads"), blas_library=p.get("filepath"))
                return info
    except Exception:
        pass
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
    libs += glob.glob(os.path.join(os.path.dirname(np.__file__), ".libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                name = getattr(lib, f"{prefix}get_corename{suffix}", None)
                if name is not None:
                    name.restype = ctypes.c_char_p
                    info["corename"] = name().decode()
                    threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    if threads is not None:
                        info["blas_threads"] = threads()
                    info["blas_library"] = os.path.basename(path)
                    return info
    return info


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: thread pool, page faults
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    best = min(times)
    times.sort()
    median = times[len(times) // 2]
    out = {"gflops": 2 * n**3 / best / 1e9, "median_gflops": 2 * n**3 / median / 1e9, "n": n, "runs": runs}
    out.update(blas_info())
    print(json.dumps(out))


main()
