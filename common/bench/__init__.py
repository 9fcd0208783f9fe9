"""``mmlego bench``: MM-Lego against its baselines on the built-in real datasets."""

from .main import benchmark, demo
from .runner import ALL_METHODS, CORE_METHODS, OVERLAPS, BenchConfig, JobResult, run_bench, run_job

__all__ = [
    "ALL_METHODS",
    "CORE_METHODS",
    "OVERLAPS",
    "BenchConfig",
    "JobResult",
    "benchmark",
    "demo",
    "run_bench",
    "run_job",
]
