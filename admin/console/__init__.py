"""The admin console: a local, read-only web view of the coordinator for consortium operators
(``mmlego admin console``), served from the admin calls of an ``AdminClient``."""

from .app import ConsoleApp, Request, Response
from .server import Console, make_console
from .source import ConsoleSource
from .svg import Point, Reference, line_plot

__all__ = [
    "Console",
    "ConsoleApp",
    "ConsoleSource",
    "Point",
    "Reference",
    "Request",
    "Response",
    "line_plot",
    "make_console",
]
