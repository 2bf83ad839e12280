"""Progress bars for long ``bsc`` steps: tqdm.auto, on stderr, only where someone watches."""

import sys


def progress(desc, total):
    """A tqdm bar (a live widget in Jupyter) used as ``with progress(...) as bar: bar.update()``.

    Off when neither a terminal nor a notebook is watching stderr (CI logs,
    pipes), and a silent stand-in when tqdm is not installed.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return Silent()
    watched = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(desc=desc, total=total, file=sys.stderr, disable=not watched, leave=False)


class Silent:
    """A bar that draws nothing."""

    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
