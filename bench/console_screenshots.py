"""Screenshots of the admin console for the docs, taken from a real consortium: a finished
``mmlego simulate --out DIR`` run (real data, blocks trained at the sites, a LegoFuse run on real
Flower processes). A copy of its store is served by a coordinator in this process, the console
reads it with the run's operator kit, and Debian's chromium (Playwright, headless) saves one PNG
per page. ``--withdraw SITE`` withdraws a site in the copy first (with ``mmlego admin withdraw``),
so the overview shows one.

    .venv/bin/mmlego simulate --scenario ovarian-4 --out /tmp/sim
    .venv/bin/python bench/console_screenshots.py --sim /tmp/sim --withdraw hosp-9 \\
        --out docs/console
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

PAGES = {"overview": "", "blocks": "blocks", "versions": "versions", "fuse": "fuse"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sim",
        type=Path,
        required=True,
        help="The --out folder of a finished `mmlego simulate` run.",
    )
    ap.add_argument("--out", type=Path, required=True, help="Folder for the PNG files.")
    ap.add_argument("--withdraw", default="", help="Withdraw this site in the copy first.")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from admin.console import make_console
    from common.admin import AdminClient, AdminKit
    from coordinator.config import load_config
    from coordinator.server import serve

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "sim"
        for part in ("coordinator", "ca", "operator"):
            shutil.copytree(args.sim / part, copy / part)
        config = load_config(copy / "coordinator" / "coordinator.toml")
        with serve(replace(config, port=0, path=None)) as running:
            address = f"127.0.0.1:{running.port}"
            if args.withdraw:
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "from common.cli import run; run()",
                        "admin",
                        "withdraw",
                        args.withdraw,
                        "--reason",
                        "left the consortium",
                        "--kit",
                        str(copy / "operator"),
                        "--coordinator",
                        address,
                    ],
                    check=True,
                )
            with (
                AdminClient(AdminKit.load(copy / "operator", address)) as client,
                make_console(client, listen="127.0.0.1:0") as console,
                sync_playwright() as p,
            ):
                browser = p.chromium.launch(
                    executable_path=args.chromium, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                args.out.mkdir(parents=True, exist_ok=True)
                latest = client.models()[0].model_id
                for name, path in {**PAGES, "card": f"versions/{latest}"}.items():
                    page.goto(console.url + path)
                    page.screenshot(path=str(args.out / f"{name}.png"), full_page=False)
                    print(f"wrote {args.out / f'{name}.png'} ({console.url + path})")
                browser.close()


if __name__ == "__main__":
    main()
