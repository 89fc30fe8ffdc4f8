"""Codes of a ground-truth dataset, computed once per evaluation and shared by every metric.

A metric never encodes images itself: it asks a `GroundTruth` for the codes of dataset items (by
index) and the cache encodes only the items it has not seen, in batches on the model's device.
Every metric of an evaluation receives a generator seeded the same way, so metrics that draw the
same sizes draw the same index sets and find them already encoded.

`as_ground_truth(represent, data)` accepts everything a metric takes: a representation function
(a vaelab model, or a plain callable images -> (B, D) codes or (codes, logvar)) with a
dataset, or precomputed arrays (codes (N, D), or a (mu, logvar) pair) with a factor array (N, F)
or the `FactorDataset` they were computed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vaelab.data.base import FactorDataset, ImageDataset
from vaelab.errors import VaelabError
from vaelab.models.base import Model

__all__ = ["PRECISIONS", "GroundTruth", "as_ground_truth", "bf16_supported", "model_encoder"]

Encoder = Callable[[Tensor], "Tensor | np.ndarray | tuple[Any, Any]"]


PRECISIONS = ("fp32", "bf16")


def bf16_supported(device: torch.device | str) -> bool:
    """Whether `device` runs bf16 natively (AVX-512 BF16 / AMX on CPU; compute capability 8+)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def model_encoder(model: nn.Module, channels_last: bool = True, precision: str = "fp32",
                  packed: bool = True) -> Encoder:
    """A batch encoder images (B, C, H, W) -> (codes (B, D), log-variances (B, D) or None).

    The codes are `model.represent`'s: the posterior means of the model's `represented`
    latents (`Model.representation`), with their log-variances when they are Gaussian. Runs under
    `torch.inference_mode`, with the input converted to channels-last for 4-D conv inputs (faster
    on CPU and GPU; the numbers are the same up to float rounding).

    Args:
        model: a vaelab model.
        channels_last: convert 4-D inputs to channels-last (on the eager path).
        precision: "fp32" (default, reproducible) or "bf16" (bf16 autocast: about 2x faster on
            CPUs with AVX-512 BF16; codes to ~3 significant digits, so histogram metrics move by
            up to about 0.01, see docs/metrics.md). "bf16" on a device without native bf16 raises.
        packed: on CPU, use the model's `inference_posterior` where it has one (the Burgess
            VAE's convolutions in oneDNN's blocked layout with prepacked weights: ~1.5x faster,
            the same codes to float rounding; `vaelab.models.onednn`). False: always the
            eager `posterior`. The returned encoder's `packed` attribute says which is used.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    if precision == "bf16" and not bf16_supported(device):
        raise VaelabError(
            f"encoding precision 'bf16' needs native bf16 on {device} (a CPU with AVX-512 BF16 "
            "or AMX, or a CUDA device of compute capability 8+); use precision 'fp32'"
        )

    fast = None
    inference_posterior = getattr(model, "inference_posterior", None)
    if packed and device.type == "cpu" and inference_posterior is not None:
        fast = inference_posterior(torch.bfloat16 if precision == "bf16" else torch.float32)
    posterior = fast or model.posterior

    def encode(x: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=precision == "bf16"):
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 4 and fast is None:
                x = x.contiguous(memory_format=torch.channels_last)
            mu, logvar = model.representation(posterior(x))
            return mu.float(), None if logvar is None else logvar.float()

    encode.device = device  # type: ignore[attr-defined]
    encode.precision = precision  # type: ignore[attr-defined]
    encode.packed = fast is not None  # type: ignore[attr-defined]
    # False for mixture priors: kl_decomposition then leaves out its KL against N(0, I)
    encode.standard_normal_prior = getattr(  # type: ignore[attr-defined]
        model, "standard_normal_prior", True)
    return encode


def _remap_factor_columns(factors: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Integer labels (N, F) of any values -> indices 0..K_f-1 per column, and the sizes K_f."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2:
        raise ValueError(f"factors must be an array (N, F), got shape {factors.shape}")
    columns, sizes = [], []
    for k in range(factors.shape[1]):
        values, inverse = np.unique(factors[:, k], return_inverse=True)
        columns.append(inverse.reshape(-1))
        sizes.append(len(values))
    return np.stack(columns, axis=1).astype(np.int64), tuple(sizes)


def _check_finite(codes: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(codes)
    if bad.any():
        dims = sorted(set(np.nonzero(bad)[1].tolist())) if codes.ndim == 2 else []
        raise VaelabError(
            f"{what} contain {int(bad.sum())} NaN/inf values (latent dims {dims}); "
            "the model or the representation function is broken (diverged training?)"
        )


class GroundTruth:
    """A dataset plus its representation, encoded lazily and cached by item index.

    Args:
        dataset: the images (an `ImageDataset`; a `FactorDataset` for supervised metrics).
        encoder: images (B, C, H, W) -> codes (B, D), or -> (mu, logvar) each (B, D). None when
            `codes` are given.
        batch_size: images per encoder call.
        codes: precomputed codes (N, D) for every item (then nothing is encoded).
        logvar: precomputed posterior log-variances (N, D), for `mig_chen`.

    Attributes:
        encoded_images: how many images were sent through the encoder so far.
        encode_seconds: wall time spent encoding so far.
        code_dtype: the floating type the representation produced (float32 for torch
            encoders and tensors, else the array's float type). The cache holds float64, which
            keeps float32 values exactly; histogram metrics bin in `code_dtype` by default, as
            disentanglement_lib bins its float32 codes with float32 edges.
        standard_normal_prior: whether the codes' prior is N(0, I): the encoder's attribute of
            that name (`model_encoder` copies the model's), True when it has none.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        encoder: Encoder | None = None,
        *,
        batch_size: int = 1024,
        codes: np.ndarray | None = None,
        logvar: np.ndarray | None = None,
    ) -> None:
        if encoder is None and codes is None:
            raise ValueError("GroundTruth needs an encoder or precomputed codes")
        self.dataset = dataset
        self.encoder = encoder
        self.standard_normal_prior = bool(getattr(encoder, "standard_normal_prior", True))
        self.batch_size = int(batch_size)
        n = len(dataset)
        self._codes: np.ndarray | None = None
        self._logvar: np.ndarray | None = None
        self._done = np.zeros(n, dtype=bool)
        self.code_dtype: type[np.floating] = np.float64
        if codes is not None:
            self.code_dtype = _source_dtype(codes)
            codes = np.asarray(codes, dtype=np.float64)
            if codes.ndim != 2 or len(codes) != n:
                raise ValueError(
                    f"codes must be (N, D) with N = {n} (one row per item), got {codes.shape}"
                )
            _check_finite(codes, "representations")
            self._codes = codes
            if logvar is not None:
                logvar = np.asarray(logvar, dtype=np.float64)
                if logvar.shape != codes.shape:
                    raise ValueError(f"logvar {logvar.shape} and codes {codes.shape} differ in shape")
                _check_finite(logvar, "posterior log-variances")
                self._logvar = logvar
            self._done[:] = True
        self.encoded_images = 0
        self.encode_seconds = 0.0

    # -- dataset facts --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def has_factors(self) -> bool:
        return isinstance(self.dataset, FactorDataset)

    def require_factors(self, metric: str) -> FactorDataset:
        """The `FactorDataset`, or a `VaelabError` naming the metric that needed it."""
        if not self.has_factors:
            name = getattr(self.dataset, "name", "") or type(self.dataset).__name__
            raise VaelabError(
                f"metric {metric!r} needs ground-truth factors, but dataset {name!r} has none; "
                "use a factor dataset (dsprites, toy_squares, ...) or an unsupervised metric "
                "(gaussian_total_correlation, gaussian_wasserstein_correlation, mutual_info_score, "
                "active_units, clustering)"
            )
        return self.dataset  # type: ignore[return-value]

    def active_factors(self, metric: str) -> list[int]:
        """Indices of the factors with more than one value (constant factors carry nothing)."""
        dataset = self.require_factors(metric)
        active = [k for k, s in enumerate(dataset.factor_sizes) if s > 1]
        if not active:
            raise VaelabError(f"metric {metric!r}: every factor of the dataset is constant")
        return active

    @property
    def is_precomputed(self) -> bool:
        return self.encoder is None

    # -- codes ----------------------------------------------------------------------------------

    def _encode_missing(self, index: np.ndarray) -> None:
        missing = np.unique(index[~self._done[index]])
        if len(missing) == 0:
            return
        assert self.encoder is not None
        if getattr(self.encoder, "device", torch.device("cpu")).type == "cpu":
            from vaelab.perf import tune_allocator

            tune_allocator()  # any API path (METRICS.get(model, dataset)): no faulting batches
        start = time.perf_counter()
        for lo in range(0, len(missing), self.batch_size):
            batch = missing[lo : lo + self.batch_size]
            out = self.encoder(self.dataset.batch(batch))
            mu, logvar = out if isinstance(out, (tuple, list)) else (out, None)
            self.code_dtype = _source_dtype(mu)
            mu = _to_numpy(mu)
            if mu.ndim != 2 or len(mu) != len(batch):
                raise VaelabError(
                    f"the representation function returned shape {mu.shape} for a batch of "
                    f"{len(batch)} images; expected ({len(batch)}, D)"
                )
            _check_finite(mu, "representations")
            if self._codes is None:
                self._codes = np.full((len(self), mu.shape[1]), np.nan)
                if logvar is not None:
                    self._logvar = np.full((len(self), mu.shape[1]), np.nan)
            self._codes[batch] = mu
            if logvar is not None and self._logvar is not None:
                logvar = _to_numpy(logvar)
                _check_finite(logvar, "posterior log-variances")
                self._logvar[batch] = logvar
            self._done[batch] = True
        self.encoded_images += len(missing)
        self.encode_seconds += time.perf_counter() - start

    def codes(self, index: np.ndarray) -> np.ndarray:
        """Codes (n, D) (float64) of the items `index` (n,), encoding those not yet cached."""
        index = np.asarray(index, dtype=np.int64)
        self._encode_missing(index)
        assert self._codes is not None
        return self._codes[index]

    def binned_codes(self, codes: np.ndarray, bin_dtype: str) -> np.ndarray:
        """Codes cast to the floating type histogram metrics bin in.

        Args:
            codes: codes (n, D) from `codes`.
            bin_dtype: "representation" (`code_dtype`, disentanglement_lib's behaviour),
                "float32" or "float64".
        """
        if bin_dtype == "representation":
            return codes.astype(self.code_dtype, copy=False)
        if bin_dtype in ("float32", "float64"):
            return codes.astype(bin_dtype, copy=False)
        raise ValueError(
            f"bin_dtype must be 'representation', 'float32' or 'float64', got {bin_dtype!r}"
        )

    def posterior(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mu, logvar), each (n, D), of the items `index`.

        Raises:
            VaelabError: the representation has no variances (not a Gaussian encoder).
        """
        mu = self.codes(index)
        if self._logvar is None:
            raise VaelabError(
                "this metric needs posterior variances, but the representation gives only codes; "
                "use a Gaussian encoder returning (mu, logvar) or pass (mu, logvar) arrays"
            )
        return mu, self._logvar[np.asarray(index, dtype=np.int64)]

    # -- sampling -------------------------------------------------------------------------------

    def sample_index(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n item indices drawn as the published protocols do: factor rows, then matching items.

        Datasets without factors draw items uniformly (with replacement).
        """
        if self.has_factors:
            dataset: FactorDataset = self.dataset  # type: ignore[assignment]
            return dataset.index_of_factors(dataset.sample_factors(n, rng), rng)
        return rng.integers(0, len(self), size=n)

    def split_index(
        self, num_train: int, num_test: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Train and test item indices.

        Images are drawn with `sample_index` (independently, as disentanglement_lib does).
        Precomputed arrays are split without replacement; with fewer rows than asked, all rows
        are used, split in the proportion num_train : num_test.
        """
        if not self.is_precomputed:
            train = self.sample_index(num_train, rng)
            return train, self.sample_index(num_test, rng) if num_test else train[:0]
        n = len(self)
        order = rng.permutation(n)
        if num_train + num_test > n:
            cut = round(n * num_train / (num_train + num_test))
            return order[:cut], order[cut:]
        return order[:num_train], order[num_train : num_train + num_test]

    def sample(self, n: int | str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """n codes (n, D) and their factor rows (n, F) (None without factors).

        n = "all" takes every item of the dataset exactly once, in order (on dSprites: the whole
        737,280-image grid); a number draws as `split_index` does.
        """
        if isinstance(n, str):
            if n != "all":
                raise ValueError(f"the number of points must be a whole number or 'all', got {n!r}")
            index = np.arange(len(self))
        else:
            index, _ = self.split_index(n, 0, rng)
        return self.codes(index), self.factors_of(index)

    def factors_of(self, index: np.ndarray) -> np.ndarray | None:
        return self.dataset.factors[index] if self.has_factors else None  # type: ignore[attr-defined]

    def codes_with_fixed_factor(
        self, k: int, values: np.ndarray, group: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Codes (n, group, D): for each of the n values, `group` items sharing factor k = value."""
        dataset = self.require_factors("fixed-factor sampling")
        values = np.asarray(values, dtype=np.int64)
        rows = dataset.resample_with_fixed_factor(k, np.repeat(values, group), rng)
        codes = self.codes(dataset.index_of_factors(rows, rng))  # (n * group, D)
        return codes.reshape(len(values), group, codes.shape[1])

    def latent_dim(self, probe: np.ndarray | None = None) -> int:
        if self._codes is None:
            self.codes(np.zeros(1, dtype=np.int64) if probe is None else probe)
        assert self._codes is not None
        return int(self._codes.shape[1])


def _source_dtype(value: Any) -> type[np.floating]:
    """float32 for tensors (`_to_numpy` goes through float32) and float32 arrays, else float64."""
    if isinstance(value, Tensor) or np.asarray(value).dtype == np.float32:
        return np.float32
    return np.float64


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().float().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def as_ground_truth(represent: Any, data: Any = None, *, batch_size: int = 1024) -> GroundTruth:
    """Everything a metric accepts, as a `GroundTruth`.

    Args:
        represent: a `GroundTruth` (returned as is); codes (N, D) as an array or tensor; a
            (mu, logvar) pair of (N, D) arrays; a vaelab `Model` (its `represent` codes); or a
            callable images (B, C, H, W) -> (B, D) codes or (mu, logvar).
        data: with a function: the `ImageDataset`/`FactorDataset` to encode. With arrays: the
            factor array (N, F) (any integer or float labels), or the `FactorDataset` whose items
            the rows of the codes are; None for unsupervised metrics on codes alone.
        batch_size: images per encoder call.

    Raises:
        ValueError: mismatched lengths or shapes (the message gives both).
        VaelabError: NaN/inf in the given codes.
    """
    if isinstance(represent, GroundTruth):
        return represent
    if isinstance(represent, (np.ndarray, Tensor)) or (
        isinstance(represent, (tuple, list)) and len(represent) == 2
        and all(isinstance(r, (np.ndarray, Tensor)) for r in represent)
    ):
        mu, logvar = represent if isinstance(represent, (tuple, list)) else (represent, None)
        dtype = _source_dtype(mu)
        mu = _to_numpy(mu)
        logvar = None if logvar is None else _to_numpy(logvar)
        if mu.ndim != 2:
            raise ValueError(f"codes must be an array (N, D), got shape {mu.shape}")
        if isinstance(data, ImageDataset):
            dataset = data
        else:
            dataset = _array_dataset(len(mu), data)
        if len(dataset) != len(mu):
            raise ValueError(
                f"mismatched lengths: {len(mu)} codes but {len(dataset)} factor rows / items"
            )
        truth = GroundTruth(dataset, codes=mu, logvar=logvar, batch_size=batch_size)
        truth.code_dtype = dtype
        return truth
    if not isinstance(data, ImageDataset):
        raise TypeError(
            "a representation function needs the dataset to encode (an ImageDataset or "
            f"FactorDataset), got {type(data).__name__}"
        )
    encoder = model_encoder(represent) if isinstance(represent, Model) else represent
    if not callable(encoder):
        raise TypeError(f"cannot use {type(represent).__name__} as a representation")
    return GroundTruth(data, encoder, batch_size=batch_size)


def _array_dataset(n: int, factors: Any) -> ImageDataset:
    """A stand-in dataset of n items (no pixels) carrying the factor array, for array inputs."""
    images = torch.zeros((1, 1, 1, 1), dtype=torch.uint8).expand(n, 1, 1, 1)  # no memory
    if factors is None:
        return ImageDataset(images, name="arrays")
    factors = _to_numpy(factors) if isinstance(factors, Tensor) else np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2:
        raise ValueError(f"factors must be an array (N, F), got shape {factors.shape}")
    if len(factors) != n:
        raise ValueError(f"mismatched lengths: {n} codes but {len(factors)} factor rows")
    if not np.isfinite(factors.astype(np.float64)).all():
        raise ValueError("factors contain NaN/inf")
    indices, sizes = _remap_factor_columns(factors)
    names = [f"factor_{k}" for k in range(len(sizes))]
    return FactorDataset(images, indices, names, sizes, name="arrays")
