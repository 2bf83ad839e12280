"""``bsc serve``: an OpenAI-compatible caching proxy (the ``[server]`` extra).

See docs/server.md.
"""

from .app import create_app, serve
from .options import ServeOptions

__all__ = ["ServeOptions", "create_app", "serve"]
