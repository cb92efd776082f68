"""snn.functional losses against independent computations."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from snn import functional

# ---------------------------------------------------------------------------------------------
# kernel_dot_product
# ---------------------------------------------------------------------------------------------


def _pairwise(x: torch.Tensor, y: torch.Tensor, kappa: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.stack([kappa(xi, yj) for yj in y]) for xi in x])


def test_kernel_dot_product_fixed_2x2_against_direct_formulas() -> None:
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    y = torch.tensor([[-1.0, 0.25], [3.0, 1.0]])
    torch.testing.assert_close(functional.kernel_dot_product(x, y, "linear"), torch.tensor([[-0.5, 5.0], [-0.75, 0.5]]))
    torch.testing.assert_close(
        functional.kernel_dot_product(x, y, "polynomial", 2), torch.tensor([[0.25, 25.0], [0.5625, 0.25]])
    )
    torch.testing.assert_close(
        functional.kernel_dot_product(x, y, "sigmoid", 0.5), torch.sigmoid(0.5 * torch.tensor([[-0.5, 5.0], [-0.75, 0.5]]))
    )
    sigma = 1.5
    expected = torch.exp(-torch.cdist(x, y) ** 2 / (2 * sigma**2))
    torch.testing.assert_close(functional.kernel_dot_product(x, y, "gaussian", sigma), expected)


@pytest.mark.parametrize(
    ("kernel", "args", "kappa"),
    [
        ("linear", (), lambda a, b: (a * b).sum()),
        ("polynomial", (3,), lambda a, b: (a * b).sum() ** 3),
        ("sigmoid", (0.7,), lambda a, b: torch.sigmoid(0.7 * (a * b).sum())),
        ("gaussian", (0.8,), lambda a, b: torch.exp(-((a - b) ** 2).sum() / (2 * 0.8**2))),
    ],
)
def test_kernel_dot_product_random_against_elementwise_loop(
    kernel: str, args: tuple[float, ...], kappa: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    rows = 4 if kernel == "gaussian" else 5
    y = torch.randn(rows, 3, dtype=torch.float64)
    result = functional.kernel_dot_product(x, y, kernel, *args)
    assert result.shape == (4, rows) and result.dtype == torch.float64
    torch.testing.assert_close(result, _pairwise(x, y, kappa))
    xg = x.clone().requires_grad_()
    yg = y.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: functional.kernel_dot_product(a, b, kernel, *args), (xg, yg))


@pytest.mark.parametrize("rows", [6, 40])  # torch.cdist switches to the matrix-product path above 25 rows
def test_kernel_dot_product_gaussian_never_exceeds_one(rows: int) -> None:
    x = torch.randn(rows, 5) * 10
    k = functional.kernel_dot_product(x, x, "gaussian", 3.0)
    assert k.max() <= 1.0
    torch.testing.assert_close(torch.diagonal(k), torch.ones(rows), atol=1e-3, rtol=0)
    spikes = (torch.rand(rows, 300) > 0.5).float()  # binary spikes: exact on both paths
    k = functional.kernel_dot_product(spikes, spikes, "gaussian", 2.0)
    assert torch.equal(torch.diagonal(k), torch.ones(rows))
    expected = torch.exp(-((spikes[:, None, :] - spikes[None, :, :]) ** 2).sum(-1) / 8.0)
    torch.testing.assert_close(k, expected)


def test_kernel_dot_product_validation() -> None:
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"kernel: expected one of \['gaussian', 'linear', 'polynomial', 'sigmoid'\], got 'rbf'"):
        functional.kernel_dot_product(x, x, "rbf")
    with pytest.raises(TypeError, match="kernel='polynomial' needs the extra positional argument 'd'"):
        functional.kernel_dot_product(x, x, "polynomial")
    with pytest.raises(TypeError, match="'sigma'"):
        functional.kernel_dot_product(x, x, "gaussian")
    with pytest.raises(ValueError, match="sigma: expected a positive number, got 0"):
        functional.kernel_dot_product(x, x, "gaussian", 0)
    with pytest.raises(ValueError, match="sigma: expected a positive number, got -1.0"):
        functional.kernel_dot_product(x, x, "gaussian", -1.0)
    with pytest.raises(ValueError, match=r"kernel='gaussian' expects as many rows as x \(3\), got 4"):
        functional.kernel_dot_product(x, torch.randn(4, 2), "gaussian", 1.0)
    with pytest.raises(ValueError, match=r"x: expected a 2-D tensor \[N, M\], got shape \(3,\)"):
        functional.kernel_dot_product(torch.randn(3), x)
    with pytest.raises(ValueError, match="y: expected 2 features per row"):
        functional.kernel_dot_product(x, torch.randn(3, 4))
    with pytest.raises(TypeError, match="y: expected dtype torch.float32"):
        functional.kernel_dot_product(x, x.double())
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got list"):
        functional.kernel_dot_product([[1.0]], x)  # type: ignore[arg-type]  # a wrong type on purpose: the error is under test
    with pytest.raises(TypeError, match="alpha: expected a real number or a one-element tensor, got 'big' \\(str\\)"):
        functional.kernel_dot_product(x, x, "sigmoid", "big")
    with pytest.raises(TypeError, match="x: expected a floating or integer dtype, got torch.bool"):
        functional.kernel_dot_product(x > 0, x > 0)


def test_kernel_dot_product_takes_numpy_and_tensor_parameters() -> None:
    np = pytest.importorskip("numpy")
    x = torch.randn(3, 2)
    for kernel, value, like in (
        ("polynomial", np.int64(2), 2),
        ("sigmoid", np.float32(0.5), 0.5),
        ("gaussian", np.float64(1.5), 1.5),
        ("gaussian", torch.tensor(1.5), 1.5),
    ):
        expected = functional.kernel_dot_product(x, x, kernel, like)
        torch.testing.assert_close(functional.kernel_dot_product(x, x, kernel, value), expected)


def test_kernel_dot_product_integer_inputs_follow_torch_arithmetic() -> None:
    # as SpikingJelly (x @ y.T on the integers): exact integer kernels, floating ones where a
    # floating parameter or the exponential enters
    x = torch.tensor([[1, 2, 0], [0, 1, 3]])
    y = torch.tensor([[2, 0, 1], [1, 1, 1]])
    linear = functional.kernel_dot_product(x, y)
    assert linear.dtype == torch.int64 and torch.equal(linear, torch.tensor([[2, 3], [3, 4]]))
    cubic = functional.kernel_dot_product(x, y, "polynomial", 3)
    assert cubic.dtype == torch.int64 and torch.equal(cubic, torch.tensor([[8, 27], [27, 64]]))
    sig = functional.kernel_dot_product(x, y, "sigmoid", 0.5)
    torch.testing.assert_close(sig, torch.sigmoid(0.5 * torch.tensor([[2.0, 3.0], [3.0, 4.0]])))
    # small integer types are summed in int64: 300 ones in uint8 would wrap around to 44
    ones = torch.ones(2, 300, dtype=torch.uint8)
    assert functional.kernel_dot_product(ones, ones).tolist() == [[300, 300], [300, 300]]
    assert functional.kernel_dot_product(ones.to(torch.int8), ones.to(torch.int8), "polynomial", 2)[0, 0] == 90000
    with pytest.raises(ValueError, match="d: integer inputs take no negative integer power, got -1"):
        functional.kernel_dot_product(x, y, "polynomial", -1)
    gauss = functional.kernel_dot_product(x, y, "gaussian", 2.0)
    assert gauss.dtype == torch.get_default_dtype()
    distance = torch.tensor([[(1 - 2) ** 2 + 2**2 + 1**2, 0 + 1 + 1], [4 + 1 + 4, 1 + 0 + 4]], dtype=gauss.dtype)
    torch.testing.assert_close(gauss, torch.exp(-distance / 8.0))


# ---------------------------------------------------------------------------------------------
# spike_similar_loss
# ---------------------------------------------------------------------------------------------


def _reference_similarity_target(spikes: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = spikes.flatten(1)
    n = flat.shape[0]
    cos = torch.zeros(n, n, dtype=flat.dtype)
    same = torch.zeros(n, n, dtype=flat.dtype)
    for i in range(n):
        for j in range(n):
            norm = flat[i].norm() * flat[j].norm()
            cos[i, j] = (flat[i] * flat[j]).sum() / (norm + 1e-8)
            shared = bool(((labels[i] > 0) & (labels[j] > 0)).any())
            same[i, j] = 1.0 if shared else 0.0
    return cos, same


@pytest.mark.parametrize(("loss_type", "f"), [("mse", F.mse_loss), ("l1", F.l1_loss)])
def test_spike_similar_loss_matches_cosine_reference_and_backpropagates(
    loss_type: str, f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    spikes = (torch.rand(5, 3, 4) > 0.5).double().requires_grad_()
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0]])
    loss = functional.spike_similar_loss(spikes, labels, "linear", loss_type)
    cos, same = _reference_similarity_target(spikes.detach(), labels)
    assert loss.dim() == 0 and loss.dtype == torch.float64
    torch.testing.assert_close(loss, f(cos, same))
    loss.backward()
    assert spikes.grad is not None and torch.isfinite(spikes.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_spike_similar_loss_of_half_spikes_is_float32(dtype: torch.dtype) -> None:
    """The reference takes the labels as float32 (``labels.float()``): half-precision spikes
    give a float32 loss, with similarities computed in float32 (in float16 the cosine's 1e-8
    guard is 0 and large spike counts overflow: NaN)."""
    g = torch.Generator().manual_seed(2)
    spikes = (torch.rand(6, 5, 4, generator=g) > 0.5).to(dtype)
    spikes[3] = 0.0  # a silent sample: 0 / (0 + 1e-8) = 0 in float32, 0 / 0 in float16
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0], [1, 1, 0]])
    loss = functional.spike_similar_loss(spikes, labels, "linear", "mse")
    assert loss.dtype == torch.float32
    flat = spikes.flatten(1).float()
    norms = flat.norm(p=2, dim=1, keepdim=True)
    similarity = ((flat @ flat.T) / (norms @ norms.T + 1e-8)).clamp(-1.0, 1.0).float()
    target = (labels.float() @ labels.float().T).clamp_max(1.0)
    torch.testing.assert_close(loss, F.mse_loss(similarity, target), rtol=0, atol=0)
    half_spikes = spikes.detach().requires_grad_(True)
    functional.spike_similar_loss(half_spikes, labels, "linear", "mse").backward()
    assert half_spikes.grad is not None and half_spikes.grad.dtype == dtype
    # NaN nowhere (the silent sample's gradient, about y / 1e-8, may exceed float16's range)
    assert not half_spikes.grad.isnan().any()
    many = torch.zeros(2, 140_000, dtype=dtype)  # 70000 spikes a sample: x . x overflows float16
    many[0, :70_000], many[1, 70_000:] = 1.0, 1.0
    assert functional.spike_similar_loss(many, torch.tensor([[1, 0], [0, 1]])).item() == 0.0


def test_spike_similar_loss_bce_with_sigmoid_kernel() -> None:
    spikes = torch.rand(4, 6)
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    loss = functional.spike_similar_loss(spikes, labels, "sigmoid", "bce", 0.3)
    flat = spikes.flatten(1)
    sim = torch.sigmoid(0.3 * flat @ flat.T)
    _, same = _reference_similarity_target(spikes, labels)
    torch.testing.assert_close(loss, F.binary_cross_entropy(sim, same.float()))


def test_spike_similar_loss_bce_linear_identical_rows_stay_in_range() -> None:
    # Identical binary rows give a cosine of exactly 1 (rounding above 1 is clamped).
    spikes = torch.tensor([[1.0, 1.0, 0.0, 1.0]] * 3 + [[0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([[1, 0]] * 3 + [[0, 1]])
    loss = functional.spike_similar_loss(spikes, labels, "linear", "bce")
    assert torch.isfinite(loss)


def test_spike_similar_loss_bce_refuses_similarities_outside_the_unit_interval() -> None:
    labels = torch.eye(3)
    binary = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    # polynomial similarities of binary spikes reach (3 . 3)^2 = 9
    with pytest.raises(ValueError, match=r"loss_type: 'bce' needs similarities in \[0, 1\].*'polynomial'.*\[0, 9\]"):
        functional.spike_similar_loss(binary, labels, "polynomial", "bce", 2)
    # a negative cosine (mixed-sign values) with the linear kernel
    with pytest.raises(ValueError, match=r"'bce' needs similarities in \[0, 1\].*'linear'"):
        functional.spike_similar_loss(binary - 0.5, labels, "linear", "bce")
    # the same inputs are fine for the other losses
    assert torch.isfinite(functional.spike_similar_loss(binary - 0.5, labels, "linear", "mse"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernel_dot_product_gaussian_half_types_against_float32(dtype: torch.dtype) -> None:
    x = (torch.rand(5, 8) > 0.5).to(dtype)
    y = (torch.rand(5, 8) > 0.5).to(dtype)
    k = functional.kernel_dot_product(x, y, "gaussian", 2.0)
    assert k.dtype == dtype
    expected = torch.exp(-((x.float()[:, None, :] - y.float()[None, :, :]) ** 2).sum(-1) / 8.0)
    torch.testing.assert_close(k.float(), expected, atol=1e-2, rtol=1e-2)
    loss = functional.spike_similar_loss(x, torch.eye(5), "gaussian", "mse", 2.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # labels as float32, as the reference


def test_spike_similar_loss_validation() -> None:
    spikes = torch.rand(3, 4)
    labels = torch.eye(3)
    with pytest.raises(ValueError, match=r"loss_type: expected one of \['mse', 'l1', 'bce'\], got 'hinge'"):
        functional.spike_similar_loss(spikes, labels, "linear", "hinge")
    with pytest.raises(ValueError, match="kernel: expected one of"):
        functional.spike_similar_loss(spikes, labels, "cosine")
    with pytest.raises(ValueError, match=r"labels: expected shape \[3, C\]"):
        functional.spike_similar_loss(spikes, torch.eye(4))
    with pytest.raises(ValueError, match="spikes: expected a tensor"):
        functional.spike_similar_loss(torch.rand(3), labels)
    with pytest.raises(TypeError, match="spikes: expected a floating dtype"):
        functional.spike_similar_loss(torch.ones(3, 4, dtype=torch.int64), labels)


# ---------------------------------------------------------------------------------------------
# TET
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 5), (1, 2, 4), (3, 2, 4, 6)])
def test_tet_matches_per_step_cross_entropy_mean_and_gradient(shape: tuple[int, ...]) -> None:
    steps, batch, classes, *extra = shape
    logits = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, classes, (batch, *extra))
    loss = functional.temporal_efficient_training_cross_entropy(logits, target)
    expected = sum(F.cross_entropy(logits[t], target) for t in range(steps)) / steps
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_tet_accepts_int32_targets() -> None:
    logits = torch.randn(2, 3, 4)
    target = torch.tensor([0, 3, 1], dtype=torch.int32)
    expected = (F.cross_entropy(logits[0], target.long()) + F.cross_entropy(logits[1], target.long())) / 2
    torch.testing.assert_close(functional.temporal_efficient_training_cross_entropy(logits, target), expected)


def test_tet_validation() -> None:
    tet = functional.temporal_efficient_training_cross_entropy
    with pytest.raises(ValueError, match=r"x_seq: expected logits \[T, N, C, \*\] with at least 3 dims, got shape \(4, 3\)"):
        tet(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="target: expected integer class indices, got dtype torch.float32"):
        tet(torch.randn(2, 3, 4), torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"target: expected shape \[3\]"):
        tet(torch.randn(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one time step"):
        tet(torch.randn(0, 3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="x_seq: expected a floating dtype"):
        tet(torch.ones(2, 3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def test_tet_names_the_time_first_layout_for_a_time_last_tensor() -> None:
    tet = functional.temporal_efficient_training_cross_entropy
    target = torch.randint(0, 10, (32,))
    time_last = torch.randn(32, 10, 8)  # [N, C, T]
    with pytest.raises(ValueError) as info:
        tet(time_last, target)
    message = str(info.value)
    assert "target: expected shape [10] ([N, *d]) for x_seq of shape (32, 10, 8), got (32,)" in message
    assert "x_seq is time-first [T, N, C, *d], here T=32, N=10, C=8" in message
    assert "x_seq.permute(2, 0, 1)" in message
    # the advice is right: the permuted tensor is what the loss expects
    loss = tet(time_last.permute(2, 0, 1), target)
    want = sum(F.cross_entropy(time_last[..., t], target) for t in range(8)) / 8
    torch.testing.assert_close(loss, want)
    # no layout advice when the batch size does not match the first dimension either
    with pytest.raises(ValueError) as info:
        tet(torch.randn(4, 3, 5), torch.zeros(2, dtype=torch.long))
    assert "permute" not in str(info.value) and "time-first" in str(info.value)


@pytest.mark.parametrize(
    ("target", "values"),
    [([0, 10, 3], "[0, 10]"), ([-1, 2, 3], "[-1, 3]"), ([-100, 1, 1], "[-100, 1]")],
)
def test_tet_refuses_class_indices_out_of_range(target: list[int], values: str) -> None:
    # torch would raise IndexError here (and a device-side assert on a GPU; -100 it ignores)
    with pytest.raises(ValueError) as info:
        functional.temporal_efficient_training_cross_entropy(torch.randn(4, 3, 10), torch.tensor(target))
    assert str(info.value) == (
        "temporal_efficient_training_cross_entropy: target: expected class indices in [0, 10) "
        f"(C = x_seq.shape[2]), got values in {values}"
    )
