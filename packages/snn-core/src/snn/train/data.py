"""The data of ``snn train``: scikit-learn's 8x8 digits, split, batched and coded in time.

The digits ship with scikit-learn (1797 images, 10 classes), so nothing is downloaded. Images
are scaled to ``[0, 1]`` and split per class with a seeded permutation, so the same seed always
gives the same split. Each batch is presented for ``T`` steps, either as the same analogue
frame at every step (``direct`` coding) or as Bernoulli spikes whose probability is the pixel
intensity (``rate`` / Poisson coding).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from snn.train.extras import import_demo_module

__all__ = ["ENCODINGS", "NUM_CLASSES", "NUM_IMAGES", "IMAGE_SHAPE", "DigitsSplit", "load_digits_split", "encode", "batch_indices"]

#: The input codings ``snn train --encoding`` accepts.
ENCODINGS = ("direct", "rate")
#: Number of digit classes.
NUM_CLASSES = 10
#: Images in scikit-learn's digits data set.
NUM_IMAGES = 1797
#: Shape of one image: one channel of 8x8 pixels.
IMAGE_SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits.

    Attributes:
        x_train: ``[N_train, 1, 8, 8]`` float32 images in ``[0, 1]``.
        y_train: ``[N_train]`` int64 labels in ``0..9``.
        x_test: ``[N_test, 1, 8, 8]`` float32 images in ``[0, 1]``.
        y_test: ``[N_test]`` int64 labels.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device | str) -> DigitsSplit:
        """The same split with every tensor moved to ``device``."""
        return DigitsSplit(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)))


def load_digits_split(seed: int, test_fraction: float = 0.2, limit: int | None = None) -> DigitsSplit:
    """Load scikit-learn's digits and split them per class, deterministically.

    Args:
        seed: seeds the permutation; the same seed gives the same split.
        test_fraction: share of each class that goes to the test set, in ``(0, 1)``.
        limit: keep only this many images in total (a seeded, class-balanced subset: every
            class gets ``limit // 10`` images or one more; for quick runs and tests); ``None``
            keeps all 1797.

    Returns:
        The split, on the CPU.

    Raises:
        ValueError: ``test_fraction`` is outside ``(0, 1)`` or ``limit`` is below 20 or above
            the number of images.
        DemoDependencyError: scikit-learn is not installed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    if limit is not None and limit < 2 * NUM_CLASSES:
        raise ValueError(f"limit: expected None or an integer >= {2 * NUM_CLASSES}, got {limit!r}")
    datasets = import_demo_module("sklearn.datasets")
    digits = datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    if limit is not None and limit > len(labels):
        raise ValueError(f"limit: expected at most the {len(labels)} images there are, got {limit!r}")

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    if limit is not None and limit < len(labels):
        # take the classes in turn, each in its permuted order: every class gets limit // 10
        # images or one more (so each has a test image), the extra ones by the permutation
        rank_in_class = torch.empty_like(order)
        for cls in range(NUM_CLASSES):
            in_class = labels[order] == cls
            rank_in_class[in_class] = torch.arange(int(in_class.sum()))
        turn = rank_in_class * len(order) + torch.arange(len(order))
        order = order[torch.argsort(turn)][:limit]
    train_parts: list[torch.Tensor] = []
    test_parts: list[torch.Tensor] = []
    for cls in range(NUM_CLASSES):
        members = order[labels[order] == cls]
        n_test = int(round(len(members) * test_fraction))
        n_test = min(max(n_test, 1), max(len(members) - 1, 0)) if len(members) > 1 else 0
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx = torch.cat(train_parts)
    test_idx = torch.cat(test_parts)
    # Interleave classes again so that unshuffled iteration is not sorted by label.
    train_idx = train_idx[torch.randperm(len(train_idx), generator=generator)]
    test_idx = test_idx.sort().values
    return DigitsSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def encode(x: torch.Tensor, T: int, encoding: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Present a batch of images for ``T`` steps.

    Args:
        x: ``[N, *]`` intensities in ``[0, 1]`` (any float dtype).
        T: number of time steps, ``>= 1``.
        encoding: ``"direct"`` repeats ``x`` at every step (a read-only expanded view);
            ``"rate"`` draws independent Bernoulli spikes with probability ``x`` per step.
        generator: random source of ``"rate"`` coding (on ``x``'s device); ``None`` uses the
            global generator.

    Returns:
        ``[T, N, *]`` tensor of ``x``'s dtype and device.

    Raises:
        ValueError: unknown ``encoding`` or ``T < 1``.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T: expected an integer >= 1, got {T!r}")
    if encoding == "direct":
        return x.unsqueeze(0).expand(T, *x.shape)
    if encoding == "rate":
        probabilities = x.clamp(0.0, 1.0).unsqueeze(0).expand(T, *x.shape)
        return torch.bernoulli(probabilities, generator=generator)
    raise ValueError(f"encoding: expected one of {ENCODINGS}, got {encoding!r}")


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[torch.Tensor]:
    """Yield index batches covering ``range(n)`` once (the last batch may be smaller).

    Args:
        n: number of samples.
        batch_size: samples per batch, ``>= 1``.
        generator: random source of the shuffle (CPU generator).
        shuffle: permute the order; otherwise ``0..n-1`` in order.

    Yields:
        ``[B]`` int64 index tensors on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)
