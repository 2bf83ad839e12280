"""matplotlib, optional, for the ``--plot`` options of ``bsc``."""


def pyplot():
    """``matplotlib.pyplot`` on a file-only backend, or an error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install "
                          "'binary-semantic-cache[bench]'") from None
    return plt
