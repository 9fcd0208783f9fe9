"""The ``mmlego`` command line, run as a real process."""

import os
import subprocess
import sys

import pytest

from common.version import code_version


def mmlego(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "common.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_help_and_version() -> None:
    out = mmlego("--help")
    assert out.returncode == 0 and "version" in out.stdout and "demo" in out.stdout
    out = mmlego("version")
    assert out.returncode == 0 and out.stdout.strip() == f"mmlego {code_version()}"


def test_unknown_dataset_is_one_clear_line() -> None:
    out = mmlego("demo", "--dataset", "tcga")
    assert out.returncode == 2
    assert out.stderr.strip() == "mmlego: error: unknown dataset 'tcga'; known: nki70"


def test_bad_option_values_exit_2() -> None:
    assert mmlego("demo", "--fourier", "3d").returncode == 2
    assert mmlego("demo", "--splits", "0").returncode == 2
    assert mmlego("no-such-command").returncode == 2


@pytest.mark.slow
def test_demo_runs_on_real_data() -> None:
    out = mmlego("demo", "--splits", "1", "--epochs", "3")
    assert out.returncode == 0, out.stderr
    for method in ("block:genes", "block:clinical", "legomerge", "legofuse-stack", "legofuse-weave"):
        assert method in out.stdout
    assert "merge uplift vs best block" in out.stdout
