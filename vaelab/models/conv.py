"""Configurable conv VAE: encoder from lists of channels, kernels, strides and paddings.

The declarative architecture of seed 004 (AndrewSpano/Disentangled-Variational-Autoencoder,
`src/models/model_utils.py`): L conv blocks
`Conv2d -> LeakyReLU(0.15) -> BatchNorm2d` (the activation before the norm, as the seed), two
separate linear heads (mu, logvar), a decoder `Linear(D -> F)` that mirrors every encoder block
with a transposed convolution whose `output_padding` is computed so the decoder recovers the
input size exactly, and the seed's output block `ConvT -> SELU -> BN -> Conv`.

Differences from the seed: the decoder returns logits (the seed ends in a sigmoid), the
reparameterisation is the correct z = mu + eps * exp(logvar / 2) (the seed multiplies eps by
logvar / 2), and impossible geometries raise `InvalidArchitectureError` at config time with the
block, its kernel/stride/padding and the sizes it produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vaelab.config import ConfigError
from vaelab.models.vae import GaussianVAE
from vaelab.registry import MODELS

__all__ = [
    "ConvConfig",
    "ConvDecoder",
    "ConvEncoder",
    "ConvVAE",
    "InvalidArchitectureError",
    "conv_output_size",
    "encoder_shapes",
    "output_paddings",
    "transposed_output_size",
]

Pair = tuple[int, int]

ACTIVATIONS = ("leaky_relu", "relu")
NORMS = ("batch", "none")
OUTPUT_BLOCKS = ("seed004", "plain")


class InvalidArchitectureError(ConfigError):
    """A conv geometry that cannot work: a map below 1x1, or a size the decoder cannot recover."""


# ----------------------------------------------------------------------------------------------
# Shape arithmetic (as the seed's `model_utils.py`), per axis


def conv_output_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution: floor((n - k + 2p) / s) + 1 (may be <= 0: invalid)."""
    return (n - kernel + 2 * padding) // stride + 1


def transposed_output_size(n: int, kernel: int, stride: int, padding: int,
                           output_padding: int = 0) -> int:
    """Output length of a transposed convolution: (n - 1) s - 2p + k + output_padding."""
    return (n - 1) * stride - 2 * padding + kernel + output_padding


def _pair(value: int | Pair) -> Pair:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _describe(block: int, kernel: Pair, stride: Pair, padding: Pair) -> str:
    return f"conv block {block} (kernel {kernel}, stride {stride}, padding {padding})"


def encoder_shapes(input_size: Pair, kernels: tuple[Pair, ...], strides: tuple[Pair, ...],
                   paddings: tuple[Pair, ...]) -> list[Pair]:
    """Spatial sizes [(H0, W0), (H1, W1), ..., (HL, WL)] of the input and after every block.

    Raises:
        InvalidArchitectureError: a block leaves a map smaller than 1x1; the message names the
            block (1-based), its geometry and the sizes before and after.
    """
    shapes = [tuple(input_size)]
    for i, (k, s, p) in enumerate(zip(kernels, strides, paddings), start=1):
        h, w = shapes[-1]
        out = (conv_output_size(h, k[0], s[0], p[0]), conv_output_size(w, k[1], s[1], p[1]))
        if min(out) < 1:
            raise InvalidArchitectureError(
                f"{_describe(i, k, s, p)} shrinks the {h}x{w} map to {out[0]}x{out[1]}; every "
                "block must leave at least 1x1 (use a smaller kernel or stride, or more padding)"
            )
        shapes.append(out)
    return shapes


def output_paddings(shapes: list[Pair], kernels: tuple[Pair, ...], strides: tuple[Pair, ...],
                    paddings: tuple[Pair, ...]) -> list[Pair]:
    """`output_padding` of the transposed block mirroring each encoder block (encoder order).

    Transposed block i maps shapes[i] back to shapes[i-1]; its output padding is the target size
    minus the transposed-conv size, which equals the remainder of (n - k + 2p) / s.

    Raises:
        InvalidArchitectureError: the size cannot be recovered (a padding outside [0, stride)).
    """
    result = []
    for i, (k, s, p) in enumerate(zip(kernels, strides, paddings), start=1):
        pad = []
        for axis in range(2):
            target = shapes[i - 1][axis]
            produced = transposed_output_size(shapes[i][axis], k[axis], s[axis], p[axis])
            extra = target - produced
            # PyTorch accepts 0 <= output_padding < stride (no dilation here).
            if not 0 <= extra < s[axis]:
                raise InvalidArchitectureError(
                    f"transposed block mirroring {_describe(i, k, s, p)} cannot recover size "
                    f"{target} from {shapes[i][axis]} (it gives {produced}, and output_padding "
                    f"must lie in [0, {s[axis]}))"
                )
            pad.append(extra)
        result.append((pad[0], pad[1]))
    return result


# ----------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True, kw_only=True)
class ConvConfig:
    """Geometry of the configurable conv VAE (one entry per block in every list).

    `kernels`, `strides` and `paddings` take (height, width) pairs; a single int k means (k, k).
    They are stored as pairs. Input channels and image size default to the dataset's (0).
    """

    latent_dim: int = 10  # D
    channels: int = 0  # C of the input; 0: taken from the data
    image_height: int = 0  # H of the input; 0: taken from the data
    image_width: int = 0  # W of the input; 0: taken from the data
    conv_channels: tuple[int, ...] = (32, 32, 64, 64)  # output channels of blocks 1..L
    # (height, width) pairs or ints. Annotated tuple[int, ...] (length checked below) because
    # config._coerce mishandles fixed-length tuples such as tuple[int, int].
    kernels: tuple[int | tuple[int, ...], ...] = (4, 4, 4, 4)
    strides: tuple[int | tuple[int, ...], ...] = (2, 2, 2, 2)
    paddings: tuple[int | tuple[int, ...], ...] = (1, 1, 1, 1)
    activation: str = "leaky_relu"  # "leaky_relu" (slope `negative_slope`) | "relu"
    negative_slope: float = 0.15  # the seed's LeakyReLU slope
    norm: str = "batch"  # "batch": BatchNorm2d after the activation, as the seed | "none"
    output_block: str = "seed004"  # "seed004": ConvT+SELU+BN+Conv | "plain": last ConvT -> C

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        for name in ("channels", "image_height", "image_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        blocks = len(self.conv_channels)
        if blocks < 1:
            raise ValueError("conv_channels must list at least one block")
        if any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be >= 1, got {self.conv_channels}")
        for name, low in (("kernels", 1), ("strides", 1), ("paddings", 0)):
            for i, value in enumerate(getattr(self, name)):
                if not isinstance(value, int) and len(value) != 2:
                    raise ValueError(
                        f"{name}[{i}] must be an int or a (height, width) pair, got {value!r}"
                    )
            pairs = tuple(_pair(v) for v in getattr(self, name))
            if len(pairs) != blocks:
                raise ValueError(
                    f"{name} has {len(pairs)} entries but conv_channels has {blocks}; "
                    "give one per block"
                )
            if any(v < low for pair in pairs for v in pair):
                raise ValueError(f"{name} must be >= {low}, got {pairs}")
            object.__setattr__(self, name, pairs)  # normalised to (height, width) pairs
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.output_block not in OUTPUT_BLOCKS:
            raise ValueError(
                f"output_block must be one of {OUTPUT_BLOCKS}, got {self.output_block!r}"
            )
        if self.image_height and self.image_width:
            self.geometry((self.image_height, self.image_width))  # raises when impossible

    def geometry(self, input_size: Pair) -> tuple[list[Pair], list[Pair]]:
        """(encoder shapes, output paddings) for an input of spatial size (H, W).

        Raises:
            InvalidArchitectureError: the geometry cannot work for this size.
        """
        shapes = encoder_shapes(input_size, self.kernels, self.strides, self.paddings)
        pads = output_paddings(shapes, self.kernels, self.strides, self.paddings)
        if self.output_block == "seed004":
            k, s, p = self.kernels[0], self.strides[0], self.paddings[0]
            grown = tuple(transposed_output_size(input_size[a], k[a], s[a], p[a]) for a in (0, 1))
            if min(grown) < 1:
                raise InvalidArchitectureError(
                    f"the seed004 output block reuses {_describe(1, k, s, p)}: its transposed "
                    f"conv maps {input_size[0]}x{input_size[1]} to {grown[0]}x{grown[1]}; "
                    "use output_block='plain' or another block-1 geometry"
                )
        return shapes, pads


# ----------------------------------------------------------------------------------------------
# Modules


def _activation(config: ConvConfig) -> nn.Module:
    if config.activation == "relu":
        return nn.ReLU()
    return nn.LeakyReLU(negative_slope=config.negative_slope)


def _block(conv: nn.Module, channels: int, config: ConvConfig) -> nn.Sequential:
    # The seed puts the activation before the batch norm; kept for parity.
    layers = [conv, _activation(config)]
    if config.norm == "batch":
        layers.append(nn.BatchNorm2d(channels))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (mu, logvar), each (B, D), from two separate linear heads."""

    def __init__(self, config: ConvConfig, in_channels: int, flat_size: int) -> None:
        super().__init__()
        blocks = []
        previous = in_channels
        for c, k, s, p in zip(config.conv_channels, config.kernels, config.strides,
                              config.paddings):
            blocks.append(_block(nn.Conv2d(previous, c, k, s, p), c, config))
            previous = c
        self.blocks = nn.Sequential(*blocks)
        self.mean_layer = nn.Linear(flat_size, config.latent_dim)
        self.logvar_layer = nn.Linear(flat_size, config.latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.blocks(x))

    def conv_stack(self) -> list[tuple[nn.Conv2d, bool]] | None:
        """The convolutions and their ReLUs (for `vaelab.models.onednn`), or None when a
        block has a layer oneDNN tensors lack (LeakyReLU, batch norm)."""
        stack = []
        for block in self.blocks:
            layers = list(block)
            if len(layers) != 2 or not isinstance(layers[1], nn.ReLU):
                return None
            stack.append((layers[0], True))
        return stack

    def head(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) from the last block's activations."""
        h = h.flatten(1)  # (B, F) with F = C_L * H_L * W_L, NCHW order
        return self.mean_layer(h), self.logvar_layer(h)


class ConvDecoder(nn.Module):
    """z (B, D) -> logits (B, C, H, W): the encoder mirrored with transposed convolutions.

    Transposed block i maps encoder size i back to size i-1 using the computed output padding.
    With `output_block="seed004"` the channel flow is the seed's c_L -> c_L -> c_{L-1} ... -> c_1
    (each transposed block outputs the channels of the encoder block it mirrors), then
    ConvT(c_1 -> c_1) -> SELU -> BN -> Conv(c_1 -> C) with block 1's kernel, stride and padding.
    With `"plain"` it is the exact mirror c_L -> c_{L-1} ... -> c_1 -> C, the last block giving
    the logits with no activation or norm.
    """

    def __init__(self, config: ConvConfig, out_channels: int, shapes: list[Pair],
                 pads: list[Pair]) -> None:
        super().__init__()
        chans = config.conv_channels
        self.start_shape = (chans[-1], *shapes[-1])
        self.decoder_input = nn.Linear(config.latent_dim, chans[-1] * shapes[-1][0] * shapes[-1][1])
        seed = config.output_block == "seed004"
        blocks = []
        previous = chans[-1]
        for i in reversed(range(len(chans))):  # encoder block index i (0-based), last first
            k, s, p = config.kernels[i], config.strides[i], config.paddings[i]
            out = chans[i] if seed else (chans[i - 1] if i > 0 else out_channels)
            convt = nn.ConvTranspose2d(previous, out, k, s, p, output_padding=pads[i])
            last_plain = not seed and i == 0
            blocks.append(nn.Sequential(convt) if last_plain else _block(convt, out, config))
            previous = out
        self.blocks = nn.Sequential(*blocks)
        if seed:
            k, s, p = config.kernels[0], config.strides[0], config.paddings[0]
            layers = [nn.ConvTranspose2d(chans[0], chans[0], k, s, p), nn.SELU()]
            if config.norm == "batch":
                layers.append(nn.BatchNorm2d(chans[0]))
            layers.append(nn.Conv2d(chans[0], out_channels, k, s, p))  # logits (no sigmoid)
            self.output_layer = nn.Sequential(*layers)
        else:
            self.output_layer = nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        h = self.decoder_input(z).view(-1, *self.start_shape)  # (B, C_L, H_L, W_L)
        return self.output_layer(self.blocks(h))


@MODELS.register("conv")
class ConvVAE(GaussianVAE):
    """Gaussian VAE with a conv encoder/decoder built from listed channels and geometry.

    Seed 004's example configs give 376,053 (config1, MNIST), 2,733,379 (config2, CIFAR-10),
    166,389 (config3) and 5,656,517 (config4, Fashion-MNIST) parameters. Weights keep PyTorch's
    default initialisation, as the seed.

    Attributes:
        encoder_shapes: spatial sizes of the input and after every encoder block.
        output_paddings: output padding of the transposed block mirroring each encoder block.
    """

    config_class = ConvConfig

    def __init__(self, config: ConvConfig = ConvConfig()) -> None:
        super().__init__()
        channels = config.channels or 1
        size = (config.image_height or 64, config.image_width or 64)
        self.config = config
        self.latent_dim = config.latent_dim
        self.image_shape = (channels, *size)
        self.encoder_shapes, self.output_paddings = config.geometry(size)
        height, width = self.encoder_shapes[-1]
        flat_size = config.conv_channels[-1] * height * width
        self.encoder = ConvEncoder(config, channels, flat_size)
        self.decoder = ConvDecoder(config, channels, self.encoder_shapes, self.output_paddings)
