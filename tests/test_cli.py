"""The ``mmlego`` command line, run as a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.version import code_version


def mmlego(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "common.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_help_and_version() -> None:
    out = mmlego("--help")
    assert out.returncode == 0 and "version" in out.stdout and "demo" in out.stdout
    out = mmlego("version")
    assert out.returncode == 0 and out.stdout.strip() == f"mmlego {code_version()}"


def test_unknown_dataset_is_one_clear_line() -> None:
    out = mmlego("demo", "--dataset", "tcga")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "mmlego: error: unknown dataset 'tcga'; "
        "known: nki70, gse7390, ovarian, pbc, pbc-survival, mfeat, support2"
    )


def test_bad_option_values_exit_2() -> None:
    assert mmlego("demo", "--fourier", "3d").returncode == 2
    assert mmlego("demo", "--splits", "0").returncode == 2
    assert mmlego("no-such-command").returncode == 2


@pytest.mark.slow
def test_demo_runs_on_real_data() -> None:
    out = mmlego("demo", "--splits", "1", "--epochs", "3")
    assert out.returncode == 0, out.stderr
    for method in (
        "block:genes",
        "block:clinical",
        "legomerge",
        "legofuse-stack",
        "legofuse-weave",
    ):
        assert method in out.stdout
    assert "merge uplift vs best block" in out.stdout


EXAMPLE = str(Path(__file__).parents[1] / "examples" / "site-data")


def test_datasets_list_shows_every_builtin() -> None:
    out = mmlego("datasets", "list")
    assert out.returncode == 0, out.stderr
    for name in ("nki70", "gse7390", "ovarian", "pbc", "mfeat"):
        assert name in out.stdout
    assert (
        "n=912" in out.stdout
        and "544 events" in out.stdout
        and "10 classes" in out.stdout
        and "GPL-3" in out.stdout
    )


def test_datasets_export_and_check(tmp_path: Path) -> None:
    out = mmlego("datasets", "export", "ovarian", "--out", str(tmp_path), "--split-by", "study")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study13", "study16", "study4", "study9"]
    check = mmlego("datasets", "check", str(tmp_path / "study9"))
    assert check.returncode == 0 and "58 patients" in check.stdout
    bad = mmlego(
        "datasets", "export", "nki70", "--out", str(tmp_path / "x"), "--split-by", "hospital"
    )
    assert bad.returncode == 2 and "no group column" in bad.stderr


def test_datasets_check_reports_a_bad_folder(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(EXAMPLE, tmp_path / "s")
    (tmp_path / "s" / "genes.csv").write_text("patient_id,GENE0\nP000,1.0\nP000,2.0\n")
    out = mmlego("datasets", "check", str(tmp_path / "s"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "genes.csv, column 'patient_id', row 2" in out.stderr
    assert mmlego("datasets", "check", EXAMPLE).returncode == 0


def test_bench_bad_input() -> None:
    out = mmlego("bench", "--datasets", "nki70,tcga", "--out", "/nonexistent/never")
    assert out.returncode == 2 and "unknown dataset 'tcga'; known: nki70, gse7390" in out.stderr
    assert mmlego("bench", "--datasets", "nki70").returncode == 2  # --out is required


def test_missing_extra_exits_3_with_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from common.cli import app

    monkeypatch.setitem(sys.modules, "SurvSet", None)
    monkeypatch.setitem(sys.modules, "SurvSet.data", None)
    result = CliRunner().invoke(app, ["demo", "--dataset", "nki70"])
    assert result.exit_code == 3
    assert "pip install 'mmlego[datasets]'" in result.output


@pytest.mark.slow
def test_bench_quick_writes_the_report(tmp_path: Path) -> None:
    out = mmlego(
        "bench", "--datasets", "nki70", "--quick", "--workers", "1", "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    methods = {r["method"] for r in doc["rows"]}
    assert {
        "block:genes",
        "block:clinical",
        "encoder:genes",
        "legomerge",
        "merge-chosen",
        "legofuse-stack",
        "legofuse-weave",
        "ensemble",
        "late-concat",
        "early-fusion",
        "classical",
        "fig6:legomerge@0.5",
        "fig6:ensemble@1",
    } <= methods
    assert doc["meta"]["merge_chosen"]["nki70/seed0"] in (
        "uniform",
        "ensemble",
    )  # picked on the validation split
    for r in doc["rows"]:
        assert r["seeds"] == [0] and 0.0 <= r["mean"] <= 1.0
    assert (
        doc["meta"]["command"]
        == f"mmlego bench --datasets nki70 --quick --workers 1 --out {tmp_path}"
    )
    assert 0.0 < doc["meta"]["validation_metric_mean"]["nki70/legomerge"] <= 1.0
    assert doc["meta"]["split_sizes"]["nki70/seed0"] == {"train": 101, "val": 21, "test": 22}
    assert "merge uplift vs best block" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "nki70-km.png").stat().st_size > 1000


def test_ca_commands(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca")
    assert mmlego("ca", "init", "--dir", ca).returncode == 0
    again = mmlego("ca", "init", "--dir", ca)
    assert again.returncode == 2 and "already holds a CA" in again.stderr
    out = mmlego(
        "ca",
        "enroll",
        "hosp-a",
        "--modality",
        "genes",
        "--modality",
        "clinical",
        "--paired",
        "--out",
        str(tmp_path / "kit-a"),
        "--dir",
        ca,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "kit-a" / "signing.key").exists()
    assert (
        mmlego("ca", "enroll-admin", "ops", "--out", str(tmp_path / "ops"), "--dir", ca).returncode
        == 0
    )
    assert (
        mmlego(
            "ca", "server-cert", "--host", "127.0.0.1", "--out", str(tmp_path / "srv"), "--dir", ca
        ).returncode
        == 0
    )
    bad = mmlego(
        "ca",
        "enroll",
        "../evil",
        "--modality",
        "genes",
        "--out",
        str(tmp_path / "evil"),
        "--dir",
        ca,
    )
    assert bad.returncode == 2 and "not allowed" in bad.stderr and not (tmp_path / "evil").exists()
    assert mmlego("ca", "revoke", "hosp-a", "--dir", ca).returncode == 0
    listing = mmlego("ca", "list", "--dir", ca).stdout
    assert (
        "hosp-a" in listing
        and "revoked" in listing
        and "modalities=genes,clinical paired" in listing
    )
    assert "admin  ops" in listing
    missing = mmlego("ca", "list", "--dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and "mmlego ca init" in missing.stderr
