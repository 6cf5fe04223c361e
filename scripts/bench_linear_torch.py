#!/usr/bin/env python3
"""torch.nn.functional.linear throughput (f32, GFLOP/s, median of 7 timings per shape) at the
shapes of examples/linear_bench.rs; prints one JSON line. Run with the bench venv
(scripts/setup-bench-venv.sh); --threads as rlvr's (default 2)."""
import argparse
import json
import time

import torch

SHAPES = [(8, 576, 1536), (64, 576, 576), (64, 576, 1536), (64, 1536, 576), (64, 576, 49152),
          (256, 576, 1536), (256, 1536, 576), (256, 576, 49152), (1024, 576, 1536), (1024, 1536, 576)]
ROUNDS = 7


def gflops(x, w):
    flop = 2.0 * x.shape[0] * x.shape[1] * w.shape[0]
    iters = max(2, int(1e10 / flop))
    t = time.perf_counter()
    for _ in range(iters):
        torch.nn.functional.linear(x, w)
    return flop * iters / (time.perf_counter() - t) / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(p.parse_args().threads)
    out = {}
    with torch.no_grad():
        for m, k, n in SHAPES:
            x, w = torch.randn(m, k), torch.randn(n, k)
            torch.nn.functional.linear(x, w)
            runs = sorted(gflops(x, w) for _ in range(ROUNDS))
            out[f"{m}x{k}x{n}"] = round(runs[ROUNDS // 2], 1)
    print(json.dumps({"impl": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                      "mkldnn": torch.backends.mkldnn.is_available(),
                      f"gflops_median_of_{ROUNDS}": out}))


if __name__ == "__main__":
    main()
