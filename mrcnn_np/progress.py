"""Progress bars for long work (training, evaluation, writing datasets).

tqdm is imported only when a bar is shown: ``tqdm.auto`` warns on stderr inside a Jupyter kernel
without ipywidgets, and a chapter that never asked for a bar must not print anything there.
"""

from __future__ import annotations


class _NoBar:
    """What :func:`progress_bar` returns when disabled: every tqdm method used here, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(enabled: bool, **kwargs):
    """A ``tqdm.auto.tqdm(**kwargs)`` bar when ``enabled``, else a silent stand-in."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(dynamic_ncols=True, **kwargs)
