"""Optional dependencies, imported when first needed, with the pip command when missing."""

import importlib

from .errors import MissingExtraError


def require(module, extra):
    """Import an optional dependency, or say exactly what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"this needs the '{module.split('.')[0]}' package, which is not installed; run "
            f"pip install 'binary-semantic-cache[{extra}]'") from None


def pyplot(*, files_only=False):
    """``matplotlib.pyplot``; ``files_only`` picks the Agg backend (servers, CI, ``bsc``)."""
    matplotlib = require("matplotlib", "plot")
    if files_only:
        matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
