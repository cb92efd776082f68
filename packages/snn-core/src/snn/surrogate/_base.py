"""The surrogate-function base class, the Heaviside step and the shared autograd function.

Every surrogate writes its derivative ``g(x)`` exactly once, in
:meth:`SurrogateFunctionBase.derivative`, against a math namespace ``ops`` from
:mod:`snn.expr`. The torch backward of every class runs through one generic
:class:`torch.autograd.Function` that evaluates that derivative; kernel backends render the
same derivative to Triton / CUDA source (see :func:`snn.surrogate.derivative_expression`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any, ClassVar

import torch
from torch import nn

from snn.expr import torch_ops
from snn.models import SurrogateSpec, check_flag, check_hyperparameter

__all__ = [
    "SurrogateFunctionBase",
    "heaviside",
    "check_real",
    "check_positive",
    "check_nonnegative",
    "check_integer",
    "spike_with_surrogate_gradient",
]

Number = float | int

#: Dtypes whose surrogate math runs in float32 (results are cast back to the input dtype).
_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """The spike function ``H(x) = 1 if x >= 0 else 0`` (so ``H(0) = 1``).

    Args:
        x: a floating tensor of any shape.

    Returns:
        A tensor of ``x``'s shape and dtype holding 0.0 and 1.0 (NaN inputs give 0.0).
    """
    return (x >= 0).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# parameter checks (used by the subclasses' ``_check_params``)


def check_real(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite float.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` is refused too).
        ValueError: ``value`` is NaN or infinite.
    """
    number = check_hyperparameter(f"{owner}: {name}", "real", value)
    assert isinstance(number, float)
    return number


def check_positive(owner: str, name: str, value: Any, lower: float = 0.0) -> float:
    """``value`` as a finite float strictly greater than ``lower``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is not finite or not ``> lower``.
    """
    number = check_real(owner, name, value)
    if not number > lower:
        raise ValueError(f"{owner}: {name}: expected a number > {lower:g}, got {value!r}")
    return number


def check_nonnegative(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite float that is not negative.

    For slopes of a surrogate gradient where 0 is meaningful (no gradient there) but a negative
    value would silently flip the gradient's sign.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is not finite or is negative.
    """
    number = check_real(owner, name, value)
    if number < 0:
        raise ValueError(
            f"{owner}: {name}: expected a number >= 0, got {value!r} (a negative slope would flip "
            "the sign of the surrogate gradient)"
        )
    return number


def check_integer(owner: str, name: str, value: Any, lower: int = 1) -> int:
    """``value`` as an ``int`` that is at least ``lower``.

    Integral floats (``2.0``, as stored in a :class:`~snn.kernels.SurrogateSpec`) are accepted.

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value`` is smaller than ``lower``.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise TypeError(f"{owner}: {name}: expected an integer, got {type(value).__name__} {value!r}")
    if number < lower:
        raise ValueError(f"{owner}: {name}: expected an integer >= {lower}, got {value!r}")
    return number


# ---------------------------------------------------------------------------------------------
# torch evaluation of the derivatives


def evaluate_derivative(
    cls: type[SurrogateFunctionBase], x: torch.Tensor, params: Mapping[str, Number]
) -> torch.Tensor:
    """``cls.derivative`` evaluated on ``x`` with torch ops.

    float16 / bfloat16 inputs are evaluated in float32 and the result cast back. Plain-number
    derivatives are broadcast to ``x``'s shape.

    Args:
        cls: the surrogate class.
        x: the input tensor, any shape, floating dtype.
        params: the surrogate's parameters by name.

    Returns:
        ``g(x)``, same shape, dtype and device as ``x``.

    Raises:
        TypeError: ``x`` is not a floating-point tensor (an integer one would truncate ``g``).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{cls.__name__}: x: expected a floating-point tensor, got {what}")
    compute = x.float() if x.dtype in _REDUCED_PRECISION else x
    g = cls.derivative(compute, torch_ops(compute.dtype), **params)
    if not isinstance(g, torch.Tensor):
        return torch.full_like(x, float(g))
    if g.shape != x.shape:
        g = g.expand(x.shape)
    return g if g.dtype == x.dtype else g.to(x.dtype)


@lru_cache(maxsize=1024)
def torch_derivative(
    cls: type[SurrogateFunctionBase], params: tuple[tuple[str, float], ...]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A cached ``x -> g(x)`` closure for ``cls`` with fixed ``params``."""
    kwargs = dict(params)

    def g(x: torch.Tensor) -> torch.Tensor:
        return evaluate_derivative(cls, x, kwargs)

    g.__name__ = f"{cls.__name__}_derivative"
    g.__qualname__ = g.__name__
    return g


class _SpikeWithSurrogateGradient(torch.autograd.Function):
    """``y = spike_fn(x)`` forward, ``dL/dx = dL/dy * g(x)`` backward.

    The one autograd function behind every surrogate's spiking mode. ``spike_fn`` is
    :func:`heaviside` for all surrogates except the ones that fire differently
    (:class:`~snn.surrogate.PoissonPass`, :class:`~snn.surrogate.MultiLevelSpikeCount`).
    Only ``x`` is saved, and only when a gradient is needed.

    This is the classic ``forward(ctx, ...)`` form: its call overhead is well below half that
    of the ``setup_context`` form, which matters because single-step neurons call it every
    time step. Under ``torch.func`` transforms :class:`_SpikeWithSurrogateGradientFunc`
    (same math, ``setup_context`` form) is used instead.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        spike_fn: Callable[[torch.Tensor], torch.Tensor],
        derivative_fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x)
            ctx.derivative_fn = derivative_fn
        return spike_fn(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative_fn(x), None, None


class _SpikeWithSurrogateGradientFunc(torch.autograd.Function):
    """:class:`_SpikeWithSurrogateGradient` in the form ``torch.func`` transforms accept."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        spike_fn: Callable[[torch.Tensor], torch.Tensor],
        derivative_fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        return spike_fn(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, _, derivative_fn = inputs
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x)
            ctx.derivative_fn = derivative_fn

    backward = _SpikeWithSurrogateGradient.backward


_functorch_active: Callable[[], bool] = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def spike_with_surrogate_gradient(
    x: torch.Tensor,
    spike_fn: Callable[[torch.Tensor], torch.Tensor],
    derivative_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``spike_fn(x)`` whose backward multiplies the upstream gradient by ``derivative_fn(x)``.

    Args:
        x: floating tensor of any shape.
        spike_fn: the forward (e.g. :func:`heaviside`), same shape and dtype out.
        derivative_fn: ``x -> g(x)``, same shape and dtype out.

    Returns:
        ``spike_fn(x)``, differentiable with respect to ``x`` through ``g``.
    """
    if _functorch_active():
        return _SpikeWithSurrogateGradientFunc.apply(x, spike_fn, derivative_fn)
    return _SpikeWithSurrogateGradient.apply(x, spike_fn, derivative_fn)


# ---------------------------------------------------------------------------------------------
# the base class


class SurrogateFunctionBase(nn.Module):
    """Base class of every surrogate-gradient function.

    In spiking mode (the default) ``forward`` returns the spikes ``heaviside(x)`` and its
    backward multiplies the upstream gradient by ``g(x)`` (:meth:`derivative`); there is no
    gradient for the hyper-parameters. With ``spiking=False`` ``forward`` is the smooth
    :meth:`primitive` (whose derivative is ``g``) under ordinary autograd.

    Hyper-parameters are plain float (or int) attributes named by :attr:`param_names`, checked
    on construction and on assignment; surrogates hold no ``nn.Parameter`` and no buffer.

    Subclasses define :attr:`param_names`, :meth:`derivative`, :meth:`primitive` and, when
    their parameters have constraints, :meth:`_check_params`.

    Attributes:
        param_names: constructor parameter names, in order.
        has_closed_form_derivative: whether the spiking forward is :func:`heaviside` and the
            backward a closed-form ``g(x)``, i.e. whether neuron kernels can use it.
        spiking: the current mode.
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    has_closed_form_derivative: ClassVar[bool] = True

    def __init__(self, spiking: bool = True, **params: Any) -> None:
        super().__init__()
        if set(params) != set(self.param_names):
            raise TypeError(
                f"{type(self).__name__}: expected parameters {self.param_names}, got {tuple(params)}"
            )
        checked = self._check_params(dict(params))
        self.set_spiking_mode(spiking)
        for name in self.param_names:
            object.__setattr__(self, name, checked[name])
        object.__setattr__(self, "_spiking_fns", None)

    # -- parameters -------------------------------------------------------------------------

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Number]:
        """Validate and normalise parameters (default: each a finite real number, as float).

        Args:
            params: parameter name -> value, every name of :attr:`param_names`.

        Returns:
            The normalised values.

        Raises:
            TypeError: a value of the wrong type.
            ValueError: a value out of range.
        """
        return {name: check_real(cls.__name__, name, params[name]) for name in cls.param_names}

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "spiking" and "spiking" in self.__dict__:  # ``s.spiking = False``, checked
            self.set_spiking_mode(value)
            return
        if name in type(self).param_names and name in self.__dict__:
            current = {n: self.__dict__[n] for n in type(self).param_names}
            current[name] = value
            value = self._check_params(current)[name]
            object.__setattr__(self, name, value)
            object.__setattr__(self, "_spiking_fns", None)
            return
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_spiking_fns"] = None  # closures are rebuilt on first use
        return state

    @property
    def params(self) -> dict[str, Number]:
        """The hyper-parameters by name, in :attr:`param_names` order."""
        return {name: getattr(self, name) for name in self.param_names}

    @property
    def spec(self) -> SurrogateSpec:
        """The hashable description kernels receive: class name, float parameters, and the class
        itself when it is not the :mod:`snn.surrogate` class of that name (a third party's)."""
        from snn.surrogate import SURROGATES

        cls = type(self)
        return SurrogateSpec(
            cls.__name__,
            tuple((name, float(getattr(self, name))) for name in self.param_names),
            None if SURROGATES.get(cls.__name__) is cls else cls,
        )

    # -- math (overridden by subclasses) ----------------------------------------------------

    # The three static methods take ``*args: Any, **params: Any``: each subclass names its own
    # parameters, and mypy accepts any signature overriding this one.

    @staticmethod
    def derivative(x: Any, ops: Any, *args: Any, **params: Any) -> Any:
        """The surrogate gradient ``g(x)``: the single source of truth of the backward.

        Written with ``+ - * /``, unary ``-``, ``**`` with a numeric exponent, comparisons,
        ``&`` and the functions of ``ops`` only, so that it evaluates on tensors
        (``ops`` = :data:`snn.expr.TORCH_OPS`) and builds an expression tree
        (``ops`` = :data:`snn.expr.SYMBOLIC_OPS`, ``x`` an :class:`snn.expr.Expr`).

        Args:
            x: the input, a tensor of any shape or an expression.
            ops: the math namespace.
            **params: the hyper-parameters (floats; integer parameters as integral floats).

        Returns:
            ``g(x)`` (a tensor, an expression, or a plain number for constant gradients).
        """
        raise NotImplementedError("SurrogateFunctionBase.derivative: subclasses define it")

    @staticmethod
    def primitive(x: torch.Tensor, *args: Any, **params: Any) -> torch.Tensor:
        """The smooth function whose derivative is ``g``, used when ``spiking=False``.

        Args:
            x: input tensor, any shape, floating dtype.
            **params: the hyper-parameters.

        Returns:
            A tensor of ``x``'s shape and dtype, differentiable by autograd.

        Raises:
            NotImplementedError: the surrogate has no primitive (spiking mode only).
        """
        raise NotImplementedError("SurrogateFunctionBase.primitive: subclasses define it")

    @staticmethod
    def spike(x: torch.Tensor, *args: Any, **params: Any) -> torch.Tensor:
        """The spiking-mode forward (default :func:`heaviside`)."""
        return heaviside(x)

    # -- module API -------------------------------------------------------------------------

    def set_spiking_mode(self, spiking: bool) -> None:
        """Switch between spiking (Heaviside + surrogate gradient) and primitive mode.

        Raises:
            TypeError: ``spiking`` is not a bool (or 0 or 1).
        """
        # 0 and 1 too: SpikingJelly tests the flag's truth
        object.__setattr__(self, "spiking", check_flag(f"{type(self).__name__}: spiking", spiking, integers=True))

    def _float_params(self) -> tuple[tuple[str, float], ...]:
        return tuple((name, float(getattr(self, name))) for name in self.param_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the surrogate.

        Args:
            x: ``[*]`` floating tensor (float16 / bfloat16 math runs in float32).

        Returns:
            Spiking mode: the spikes (``heaviside(x)`` for all but the stochastic / multi-level
            classes), same shape and dtype, with the surrogate gradient. Otherwise the
            primitive of ``x``.

        Raises:
            TypeError: ``x`` is not a floating tensor.
            NotImplementedError: ``spiking=False`` on a class without a primitive.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            what = f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{type(self).__name__}: x: expected a floating-point tensor, got {what}")
        cls = type(self)
        if self.spiking:
            fns = self.__dict__.get("_spiking_fns")
            if fns is None:
                derivative_fn = torch_derivative(cls, self._float_params())  # type: ignore[arg-type]  # mypy checks a class against Hashable through its unbound __hash__
                spike_fn = heaviside if cls.spike is _DEFAULT_SPIKE else partial(cls.spike, **self.params)  # type: ignore[arg-type]  # parameters by name; x comes at the call
                fns = (spike_fn, derivative_fn)
                object.__setattr__(self, "_spiking_fns", fns)
            return spike_with_surrogate_gradient(x, *fns)
        if x.dtype in _REDUCED_PRECISION:
            return cls.primitive(x.float(), **self.params).to(x.dtype)
        return cls.primitive(x, **self.params)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)``, the surrogate gradient, evaluated on a tensor.

        Args:
            x: ``[*]`` floating tensor.

        Returns:
            ``g(x)`` with ``x``'s shape, dtype and device.
        """
        return evaluate_derivative(type(self), x, self.params)

    def extra_repr(self) -> str:
        parts = [f"{name}={getattr(self, name)!r}" for name in self.param_names]
        parts.append(f"spiking={self.spiking}")
        return ", ".join(parts)


_DEFAULT_SPIKE = SurrogateFunctionBase.spike
