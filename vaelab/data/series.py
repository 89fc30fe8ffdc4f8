"""MNIST series (UG-VAE, Peis et al. 2020, §4.3; ipeis/UG-VAE): batches whose digits follow
a number series, for evaluation only (the model never trains on them).

Four digit streams of length 256: the decimal digits of the even numbers (0, 2, 4, ... read as
"0246810121416..."), of the odd numbers, of the Fibonacci numbers from 0, 1 and of the primes.
A batch of B images picks a series, a start position, reads B consecutive digits of its stream
(wrapping modulo 256) and takes, for each digit n, the next image of class n in dataset order.

Two decisions that differ from the seed, both documented:
* the per-class iterators cycle (the seed's never reset, so long evaluations exhausted a class);
* `balanced=True` (the default) gives every series the same number of batches (a shuffled
  round-robin) so that chance for the 4-way series classifier is exactly 0.25; the seed drew the
  series uniformly at random per batch (`balanced=False`).
The seed's optional offset/scale of the streams is not offered (it was silently skipped for primes).
"""

from __future__ import annotations

import numpy as np

from vaelab.data.base import DataError

__all__ = ["SERIES", "SeriesBatches", "series_digits"]

SERIES = ("even", "odd", "fibonacci", "primes")
STREAM_LENGTH = 256


def _numbers(name: str):
    if name == "even":
        yield from range(0, 10**9, 2)
    elif name == "odd":
        yield from range(1, 10**9, 2)
    elif name == "fibonacci":
        a, b = 0, 1
        while True:
            yield a
            a, b = b, a + b
    elif name == "primes":
        found: list[int] = []
        n = 2
        while True:
            if all(n % p for p in found if p * p <= n):
                found.append(n)
                yield n
            n += 1
    else:
        raise ValueError(f"unknown series {name!r}; known: {', '.join(SERIES)}")


def series_digits(name: str, length: int = STREAM_LENGTH) -> np.ndarray:
    """The first `length` decimal digits of series `name`, as an int64 array."""
    digits: list[int] = []
    for number in _numbers(name):
        digits.extend(int(c) for c in str(number))
        if len(digits) >= length:
            return np.asarray(digits[:length], dtype=np.int64)
    raise AssertionError("unreachable")


class SeriesBatches:
    """Index batches of series digits over a dataset labelled with the digits 0..9.

    `draw(n)` returns n index arrays of `batch_size` and their series ids (into `SERIES`).
    """

    def __init__(self, labels: np.ndarray | None, batch_size: int, seed: int = 0,
                 balanced: bool = True) -> None:
        if labels is None:
            raise DataError("MNIST series need a dataset labelled with the digits 0-9 (mnist); "
                            "this one has no labels")
        labels = np.asarray(labels)
        missing = [d for d in range(10) if not (labels == d).any()]
        if missing:
            raise DataError(f"MNIST series need images of every digit 0-9; the dataset has none "
                            f"labelled {missing} (is it MNIST?)")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size}")
        self.batch_size = batch_size
        self.balanced = balanced
        self.rng = np.random.default_rng(seed)
        self.streams = np.stack([series_digits(name) for name in SERIES])  # (4, 256)
        self.members = [np.flatnonzero(labels == d) for d in range(10)]  # dataset order
        self.next = np.zeros(10, dtype=np.int64)  # per-class position, cycled

    def _take(self, digits: np.ndarray) -> np.ndarray:
        index = np.empty(len(digits), dtype=np.int64)
        for i, d in enumerate(digits):
            pool = self.members[d]
            index[i] = pool[self.next[d] % len(pool)]
            self.next[d] += 1
        return index

    def draw(self, n: int) -> tuple[list[np.ndarray], np.ndarray]:
        if self.balanced:
            kinds = self.rng.permutation(np.arange(n) % len(SERIES))
        else:
            kinds = self.rng.integers(0, len(SERIES), n)
        batches = []
        for s in kinds:
            start = int(self.rng.integers(0, STREAM_LENGTH))
            positions = (start + np.arange(self.batch_size)) % STREAM_LENGTH
            batches.append(self._take(self.streams[s, positions]))
        return batches, kinds
