"""The ClientApp that the Flower app of LegoFuse rounds names: the installed site side's own,
found through its ``mmlego.flower`` entry point (``clientapp``) as ``mmlego`` finds its commands.
The coordinator writes the app naming this module, so it names no site code; a SuperNode's
ClientApp process resolves it to the site's app at load time."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUP = "mmlego.flower"


def site_clientapp() -> Any:
    found = list(entry_points(group=GROUP, name="clientapp"))
    if not found:
        raise RuntimeError(
            f"no site ClientApp is installed (entry point group {GROUP!r}, name 'clientapp'): "
            "install mmlego with its site side on this node"
        )
    return found[0].load()


app = site_clientapp()
