"""Log lines as JSON objects for log collectors, and the option that picks them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from common.logs import JsonFormatter

MMLEGO = [sys.executable, "-c", "from common.cli import run; run()"]


def test_a_json_line_has_the_message_the_extras_and_the_exception() -> None:
    record = logging.LogRecord(
        "mmlego.coordinator", logging.WARNING, __file__, 1, "refused %s", ("Merge",), None
    )
    record.event, record.site = "refused", "hosp-a"
    line = json.loads(JsonFormatter().format(record))
    assert (
        line["level"] == "warning"
        and line["logger"] == "mmlego.coordinator"
        and line["message"] == "refused Merge"
    )
    assert (
        line["event"] == "refused" and line["site"] == "hosp-a" and line["time"].endswith("+00:00")
    )
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]


def test_the_command_line_writes_json_logs_and_refuses_an_unknown_format(tmp_path: Path) -> None:
    done = subprocess.run(
        [*MMLEGO, "--log-format", "json", "-v", "ca", "init", "--dir", str(tmp_path / "ca")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    bad = subprocess.run(
        [*MMLEGO, "--log-format", "xml", "version"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "log format must be text or json, not 'xml'" in bad.stderr
    bad = subprocess.run(
        [
            *MMLEGO,
            "coordinator",
            "init",
            "--out",
            str(tmp_path / "c"),
            "--ca",
            str(tmp_path / "ca"),
            "--metrics",
            "9464",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--metrics: address '9464' must be host:port" in bad.stderr
    assert not (tmp_path / "c").exists()
