"""Progress over the cases of a prediction run: a tqdm bar with ETA on stderr while a terminal shows it, and one
last line (cases, total time, where the outputs are).

The bar counts the predictions ``<case><file_ending>`` that appear in the output folder (polled every
:data:`POLL_S` seconds from a background thread), so it works for any predictor that writes one file per case
(nnU-Net's, predict-c2f's) without hooking into it. Cases whose prediction exists at the start (a continued run)
count as done. tqdm draws nothing when stderr is not a terminal (``disable=None``): logs stay plain; ``quiet``
turns the bar and the last line off.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Sequence

POLL_S = 0.5


class CaseProgress:
    """``with CaseProgress(output_folder, cases, file_ending, quiet): run()``; then :meth:`summary`."""

    def __init__(self, output_folder, cases: Sequence[str], file_ending: str, quiet: bool = False):
        self.folder, self.cases, self.ending, self.quiet = Path(output_folder), list(cases), file_ending, quiet
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._bar = None
        self._thread = None

    def done(self) -> int:
        return sum((self.folder / f"{c}{self.ending}").is_file() for c in self.cases)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self._update()

    def _update(self) -> None:
        n = self.done()
        if self._bar is not None and n > self._bar.n:
            self._bar.update(n - self._bar.n)

    def __enter__(self):
        from tqdm import tqdm

        self.start = time.perf_counter()
        if not self.quiet:
            self._bar = tqdm(total=len(self.cases), initial=self.done(), unit="case", desc="cases", file=sys.stderr,
                             disable=None, dynamic_ncols=True)
            if not self._bar.disable:
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._update()
            self._bar.close()

    def summary(self, extra: str = "") -> str:
        """The last line (printed to stdout unless quiet): cases, total time, where the outputs are."""
        secs = time.perf_counter() - self.start
        line = (f"{self.done()} of {len(self.cases)} case(s) predicted in {secs:.1f} s; outputs in {self.folder}"
                f"{extra}")
        if not self.quiet:
            print(line, flush=True)
        return line
