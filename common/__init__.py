"""mmlego common: the MM-Lego method and everything the coordinator and the sites share."""

from .version import code_version

__all__ = ["code_version"]
