"""Expressions compiled to allocation-free torch programs.

The torch backend evaluates a neuron model's expressions (:mod:`snn.models`) once per time
step, or once per tile of steps in backward. Evaluating an expression tree with ordinary tensor
arithmetic allocates a fresh tensor per operation, which on CPU costs page faults that can
exceed the arithmetic. :func:`compile_program` turns a set of expressions into a short program
of ``out=`` operations on a few preallocated slots instead, and fuses common shapes into single
torch operations:

- ``a + c * b`` and ``a - c * b`` with a number or parameter ``c`` -> ``torch.add(a, b, alpha=c)``;
- ``a + (b - a) * w`` -> ``torch.lerp(a, b, w)`` when ``w < 1/2`` (where torch defines lerp as
  ``a + w (b - a)``), else a subtraction and an ``add`` (backward programs only);
- ``a + b * c``, ``a - b * c``, ``a + (-b) * c`` on tensors -> ``torch.addcmul``;
- ``where(t > c, t, c)`` with a number ``c`` -> ``torch.clamp`` and ``nan_to_num_`` (ops
  ``atleast`` / ``atmost``, from :func:`~snn.backends.torch_lowering.lower`);
- ``(1 - s) t`` with ``s`` of 0/1 values (a spike, a mask) -> ``tanh_backward(t, s)``, which is
  ``t (1 - s s)``, the same value bit for bit (op ``keep``, from
  :func:`~snn.backends.torch_lowering.keep_products`): a hard reset ``s c + (1 - s) h`` is two
  passes, ``keep`` and ``add(alpha=c)``.

``torch.addcmul``, ``torch.add(alpha=)`` and ``torch.lerp`` round the product and the sum once
(a fused multiply-add where the CPU has one: ``x + u * u`` differed from the unfused
expression in the last bit for about one element in seven on the project's machine). A forward
program, whose spikes must match a reference that rounds every operation, therefore fuses a
product into a sum only where the product is exact (a 0/1 factor such as a spike or a mask,
or a number that is zero or a power of two); ``lerp`` only in backward (PLIF's ``v + (x - v) k``
as ``torch.lerp`` gave other spikes than SpikingJelly's two roundings for about one input in
ten within two units in the last place of the threshold). Backward programs (``affine=True``)
fuse every such shape, and also ``b + (alpha t) q`` and ``alpha (p q) + beta`` into one
``torch.addcmul``.

Structurally equal sub-expressions are computed once (:func:`~snn.backends.torch_lowering.lower`), and a selection between
constants, ``where(cond, c, 0)``, becomes the product of ``c`` and a 0/1 mask that the comparison
writes straight in the compute dtype: on CPU a comparison into a ``bool`` tensor, and
``torch.where`` reading one, each cost about three plain arithmetic passes.

Sub-expressions of parameters only (a learnable ``w`` in ``sigmoid(w)``) are evaluated once per
call, by torch on 0-dim tensors of the compute dtype (:meth:`Program.scalar_values`), not per
element; on CPU, numbers in tensor operations are 0-dim tensors
of the compute dtype made once per binding (:func:`number_operand`). Other operations mirror the
tensor operators (``number - t`` as ``torch.rsub``, ``number / t`` as ``reciprocal(t) * number``
like ``Tensor.__rtruediv__``, ``minimum(t, c)`` as ``clamp``), so a forward program computes
what the plain torch evaluation of the same tree computes, bit for bit.

Example:
    >>> import torch
    >>> from snn.expr import var
    >>> from snn.backends.torch_program import compile_program
    >>> u, x = var("u"), var("x")
    >>> program = compile_program([u + (x - u) * 0.25], ["u", "x"])
    >>> run = program.bind((3,), torch.float32, torch.device("cpu"))
    >>> run((torch.zeros(3), torch.ones(3)), (), (None,))[0]
    tensor([0.2500, 0.2500, 0.2500])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from snn.backends.torch_lowering import (
    FLIPPED,
    MASK_OF,
    fuse_sum,
    is_power_of_two,
    keep_products,
    lower,
    number_times_tensor,
)
from snn.expr import FLOAT_OPS, Expr, evaluate, torch_ops, variables

__all__ = ["Program", "compile_program", "number_operand"]

# typed Callable[..., Tensor]: the entries are overloaded torch functions called with out=
_COMPARE: dict[str, Callable[..., torch.Tensor]] = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge}
_UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "exp": torch.exp, "exp2": torch.exp2, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt, "sigmoid": torch.sigmoid,
    "cos": torch.cos, "sin": torch.sin, "neg": torch.neg,
    # torch.relu takes no out=; clamp keeps NaN as relu does
    "relu": lambda a, out: torch.clamp(a, min=0.0, out=out),
}
_BOOL_OPS = frozenset(_COMPARE) | {"and"}
_MASKS = {mask: op for op, mask in MASK_OF.items()}

# An operand: ("in", i) input tensor, ("slot", i) scratch, ("num", v) number, ("sc", i) scalar.
Operand = tuple[Any, ...]


def number_operand(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor | float:
    """A number operand of a torch operation on tensors of ``dtype`` on ``device``.

    On CPU a 0-dim tensor of ``dtype``: the same value as the Python number (both are cast to
    the dtype), without the conversion of a wrapped number that torch makes on every call
    (``torch.ge(h, 1.0)``). Elsewhere the number itself: a new device tensor would be a
    host-to-device copy, which synchronises from pageable memory.
    """
    if _numbers_as_tensors(device):
        return torch.tensor(value, dtype=dtype, device=device)
    return value


# torch refuses an ``alpha`` or ``value`` beyond the dtype's range (a learnable near 0 gives a
# factor 1 / k of 1e39 in float32) where the plain loop's products overflow to infinity: these
# three multiply first when it does, so the results become non-finite as the plain loop's do.


def _add_scaled(base: torch.Tensor, t: torch.Tensor, alpha: float, out: torch.Tensor) -> torch.Tensor:
    """``out = base + alpha t`` (``out`` may be ``base``); see the comment above."""
    try:
        return torch.add(base, t, alpha=alpha, out=out)
    except RuntimeError:
        return torch.add(base, torch.mul(t, alpha), out=out)


def _add_product(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, value: float, out: torch.Tensor) -> torch.Tensor:
    """``out = base + value a b`` (``out`` may be ``base``); see the comment above."""
    try:
        return torch.addcmul(base, a, b, value=value, out=out)
    except RuntimeError:
        return torch.add(base, torch.mul(torch.mul(a, value), b), out=out)


def _scaled_product(a: torch.Tensor, b: torch.Tensor, value: float, zero: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = value a b`` in one pass (``zero``: a 0-dim zero of ``out``'s dtype); see above."""
    try:
        return torch.addcmul(zero, a, b, value=value, out=out)
    except RuntimeError:
        return torch.mul(torch.mul(a, value), b, out=out)


def _numbers_as_tensors(device: torch.device) -> bool:
    """Whether number operands on ``device`` are 0-dim tensors (see :func:`number_operand`)."""
    return device.type == "cpu"


@dataclass(frozen=True)
class _Instruction:
    op: str
    args: tuple[Operand, ...]
    out: int  # slot index, or -1 - k for output k
    value: Any = None


@dataclass(frozen=True, eq=False)
class Program:
    """Compiled expressions: scalar expressions (per call) and tensor instructions (per run).

    Attributes:
        tensor_vars: names of the tensor inputs, in call order.
        scalar_vars: names of the scalar inputs (Python floats), in call order.
        scalars: parameter-only sub-expressions, evaluated by :meth:`scalar_values`.
        instructions: tensor operations in evaluation order.
        slot_is_bool: whether each scratch slot holds a bool mask.
        results: per output, the operand holding it.
    """

    tensor_vars: tuple[str, ...]
    scalar_vars: tuple[str, ...]
    scalars: tuple[Expr, ...]
    instructions: tuple[_Instruction, ...]
    slot_is_bool: tuple[bool, ...]
    results: tuple[Operand, ...]

    def scalar_values(self, values: Sequence[float], dtype: torch.dtype | None = None) -> tuple[float, ...]:
        """The scalar operands of a run: the scalar inputs, then the parameter-only
        sub-expressions evaluated on them (once per kernel call).

        Args:
            values: the scalar inputs (learnable parameters' values).
            dtype: the compute dtype. The sub-expressions are evaluated by torch on 0-dim
                tensors of it, as a module computes ``self.w.sigmoid()`` on its float32
                parameter (SpikingJelly's PLIF): in float64 the decay can differ in the last
                bit, and a potential that close to the threshold spikes differently. ``None``:
                in Python floats (double precision).
        """
        raw = tuple(float(v) for v in values)
        if not self.scalars:
            return raw
        if dtype is None:
            env: dict[str, Any] = dict(zip(self.scalar_vars, raw))
            return raw + tuple(float(evaluate(e, env, FLOAT_OPS)) for e in self.scalars)
        env = {name: torch.tensor(value, dtype=dtype) for name, value in zip(self.scalar_vars, raw)}
        ops = torch_ops(dtype)
        return raw + tuple(float(evaluate(e, env, ops)) for e in self.scalars)

    def bind(
        self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> Callable[[Sequence[torch.Tensor], Sequence[float], Sequence[torch.Tensor | None]], list[Any]]:
        """Allocate the scratch slots for inputs of ``shape`` and return the runner.

        The runner is ``run(inputs, scalars, outs)``: ``inputs`` the tensors of
        :attr:`tensor_vars` (each of ``shape``), ``scalars`` from :meth:`scalar_values`, ``outs``
        one tensor (written in place; it must not alias an input: until an output is written,
        its buffer holds intermediate values) or ``None`` per output. It
        returns the outputs: the given tensors, scratch slots (valid until the next run),
        inputs, or Python numbers for constant outputs.
        """
        slots = [
            torch.empty(shape, dtype=torch.bool if is_bool else dtype, device=device)
            for is_bool in self.slot_is_bool
        ]
        zero_dim: dict[tuple[float, float], torch.Tensor] = {}

        def constant(value: float) -> torch.Tensor:
            key = (value, math.copysign(1.0, value))  # -0.0 apart from 0.0 (they compare equal)
            found = zero_dim.get(key)
            if found is None:
                found = zero_dim[key] = torch.tensor(value, dtype=dtype, device=device)
            return found

        env: list[Any] = [None, None, None]  # inputs, scalars, outs

        def output_target(k: int) -> Callable[[], torch.Tensor]:
            fallback = torch.empty(shape, dtype=dtype, device=device)

            def output() -> torch.Tensor:
                out = env[2][k]
                return fallback if out is None else out

            return output

        outputs = [output_target(k) for k in range(len(self.results))]

        def target(index: int) -> Callable[[], torch.Tensor]:
            if index >= 0:
                tensor = slots[index]
                return lambda: tensor
            return outputs[-1 - index]

        def fetch(arg: Operand) -> Callable[[], Any]:
            kind = arg[0]
            if kind == "out":
                return outputs[arg[1]]
            if kind == "in":
                index = arg[1]
                return lambda: env[0][index]
            if kind == "slot":
                tensor = slots[arg[1]]
                return lambda: tensor
            if kind == "sc":
                index = arg[1]
                return lambda: env[1][index]
            number = float(arg[1])
            return lambda: number

        # number operands as the cached 0-dim tensors where number_operand gives tensors (CPU)
        as_tensors = _numbers_as_tensors(torch.device(device))
        steps = [
            _bind(ins, [fetch(a) for a in ins.args], target(ins.out), constant, as_tensors)
            for ins in self.instructions
        ]
        results = [fetch(r) for r in self.results]
        copies = [
            (k, fetch(r), r[0] in ("num", "sc")) for k, r in enumerate(self.results) if not (r[0] == "out" and r[1] == k)
        ]

        def run(inputs: Sequence[torch.Tensor], scalars: Sequence[float], outs: Sequence[torch.Tensor | None]) -> list[Any]:
            env[0], env[1], env[2] = inputs, scalars, outs
            for step in steps:
                step()
            values = [r() for r in results]
            for k, f, is_number in copies:
                out = outs[k]
                if out is not None:
                    if is_number:
                        out.fill_(f())
                    else:
                        out.copy_(f())
                    values[k] = out
            return values

        return run


def _bind(
    ins: _Instruction,
    fetch: list[Callable[[], Any]],
    out: Callable[[], torch.Tensor],
    constant: Callable[[float], torch.Tensor],
    numbers_as_tensors: bool = True,
) -> Callable[[], Any]:
    """One instruction as a closure over its operand fetchers and output (with
    ``numbers_as_tensors``, number operands of arithmetic and comparisons as ``constant``'s
    0-dim tensors)."""
    op = ins.op
    kinds = [a[0] for a in ins.args]
    fn: Callable[..., torch.Tensor]
    if op in _UNARY:
        fn = _UNARY[op]
        (a,) = fetch
        return lambda: fn(a(), out=out())
    if op == "copy":
        (a,) = fetch
        if kinds[0] in ("num", "sc"):
            return lambda: out().fill_(a())
        return lambda: out().copy_(a())
    if op == "pow":
        (a,) = fetch
        exponent = ins.value
        return lambda: torch.pow(a(), exponent, out=out())
    if op == "affine":  # alpha t + beta
        (a,) = fetch
        alpha, beta = ins.value
        if beta == 0.0:
            return lambda: torch.mul(a(), alpha, out=out())
        if alpha == 1.0:
            return lambda: torch.add(a(), beta, out=out())
        offset = constant(beta)
        return lambda: _add_scaled(offset, a(), alpha, out())
    if op == "keep":  # t (1 - b) for b of 0/1 values, as t (1 - b b): bit for bit (see keep_products)
        t, b = fetch
        return lambda: torch.ops.aten.tanh_backward.grad_input(t(), b(), grad_input=out())
    if op == "tmt":  # value t (1 - t), as (value (1 - t)) t
        (a,) = fetch
        scale = constant(float(ins.value))
        return lambda: torch.ops.aten.sigmoid_backward.grad_input(scale, a(), grad_input=out())
    if op == "scaledmul":  # (value t) q
        a, b = fetch
        zero, value = constant(0.0), float(ins.value)
        return lambda: _scaled_product(a(), b(), value, zero, out())
    if op == "where":
        def branch(kind: str, f: Callable[[], Any]) -> Callable[[], Any]:
            if kind == "num":  # constant branches become 0-dim tensors of the compute dtype
                tensor = constant(f())
                return lambda: tensor
            if kind == "sc":
                return lambda: torch.tensor(f(), dtype=out().dtype, device=out().device)
            return f

        c, a, b = fetch[0], branch(kinds[1], fetch[1]), branch(kinds[2], fetch[2])
        if kinds[0] in ("num", "sc"):  # a condition on parameters only: one branch per call

            def select() -> Any:
                o, chosen = out(), (a() if c() else b())
                return o.copy_(chosen) if isinstance(chosen, torch.Tensor) else o.fill_(chosen)

            return select
        return lambda: torch.where(c(), a(), b(), out=out())
    if op in ("atleast", "atmost"):  # where(t > c, t, c) / where(t < c, t, c): NaN gives c
        a, c = fetch
        bound = float(c())
        limit = {"min": bound} if op == "atleast" else {"max": bound}

        def clamp_select() -> Any:
            return torch.clamp(a(), out=out(), **limit).nan_to_num_(nan=bound, posinf=math.inf, neginf=-math.inf)

        return clamp_select
    if op == "and":
        a, b = fetch
        return lambda: torch.logical_and(a(), b(), out=out())
    if op in ("axpy", "axmy"):  # a + alpha * b, a - alpha * b
        a, b, alpha = fetch
        sign = 1.0 if op == "axpy" else -1.0
        return lambda: _add_scaled(a(), b(), sign * alpha(), out())
    if op == "addcmul":  # a + value * b * c
        a, b, c = fetch
        value = float(ins.value)
        if kinds[0] == "num":  # a number base: a 0-dim tensor of the compute dtype
            base = constant(float(ins.args[0][1]))
            a = lambda: base  # noqa: E731  # the same fetcher shape as the other operands

        return lambda: _add_product(a(), b(), c(), value, out())
    if op == "lerp":  # a + w * (b - a)
        a, b, w = fetch

        def lerp() -> Any:
            weight = w()
            o = out()
            if 0.0 <= weight < 0.5:  # torch defines lerp as a + w (b - a) here
                return torch.lerp(a(), b(), weight, out=o)
            torch.sub(b(), a(), out=o)
            return torch.add(a(), o, alpha=weight, out=o)

        return lerp
    a, b = fetch
    left, right = kinds[0] in ("num", "sc"), kinds[1] in ("num", "sc")
    if numbers_as_tensors and op not in ("minimum", "maximum"):  # (clamp takes numbers)
        # a number operand as a 0-dim tensor of the compute dtype: the same value (a Python
        # number is cast to the dtype too), without converting a wrapped number on every call
        if kinds[0] == "num":
            number_a = constant(float(ins.args[0][1]))
            a = lambda: number_a  # noqa: E731  # the same fetcher shape as the other operands
        if kinds[1] == "num":
            number_b = constant(float(ins.args[1][1]))
            b = lambda: number_b  # noqa: E731
    if op in _MASKS:  # the comparison, written as 0/1 into a tensor of the compute dtype
        op = _MASKS[op]
    if op in _COMPARE:
        if left:  # c < t  is  t > c
            fn = _COMPARE[FLIPPED[op]]
            return lambda: fn(b(), a(), out=out())
        fn = _COMPARE[op]
        return lambda: fn(a(), b(), out=out())
    if op in ("+", "*"):
        fn = torch.add if op == "+" else torch.mul
        if left:  # c + t and c * t evaluate as t + c, t * c
            return lambda: fn(b(), a(), out=out())
        return lambda: fn(a(), b(), out=out())
    if op == "-":
        if left:  # c - t: one rounding, like Tensor.__rsub__ (c as a 0-dim tensor)
            if kinds[0] == "num":
                c0 = constant(float(ins.args[0][1]))
                return lambda: torch.sub(c0, b(), out=out())
            return lambda: torch.sub(torch.tensor(a(), dtype=out().dtype, device=out().device), b(), out=out())
        return lambda: torch.sub(a(), b(), out=out())
    if op == "/":
        if left:  # c / t is reciprocal(t) * c, like Tensor.__rtruediv__

            def divide_into() -> Any:
                o = out()
                torch.reciprocal(b(), out=o)
                return o.mul_(a())

            return divide_into
        return lambda: torch.div(a(), b(), out=out())
    if op in ("minimum", "maximum"):
        if left or right:  # with a constant: clamp, as snn.expr.TorchOps does
            t, c = (b, a) if left else (a, b)
            if op == "minimum":
                return lambda: torch.clamp(t(), max=c(), out=out())
            return lambda: torch.clamp(t(), min=c(), out=out())
        fn = torch.minimum if op == "minimum" else torch.maximum
        return lambda: fn(a(), b(), out=out())
    raise ValueError(f"expression: cannot compile operation {op!r} for the torch backend")


def compile_program(
    outputs: Sequence[Expr],
    tensor_vars: Sequence[str],
    scalar_vars: Sequence[str] = (),
    affine: bool = False,
    binary_vars: Sequence[str] = (),
) -> Program:
    """Compile ``outputs`` into a :class:`Program`.

    Without ``affine`` the program rounds as the plain torch evaluation of ``outputs`` does
    (see the module docstring): ``torch.lerp``, ``torch.addcmul`` and ``torch.add(alpha=)``
    round the product and the sum once (a fused multiply-add on CPUs that have one), so a
    product is fused into a sum only where it is exact, with a factor of 0/1 values (a variable
    of ``binary_vars``, ``1 -`` one, a comparison mask) or a number that is zero or a power of two.

    Args:
        outputs: the expressions to compute.
        tensor_vars: names of the variables given as tensors, in call order.
        scalar_vars: names of the variables given as Python floats, in call order.
        affine: collapse chains of arithmetic with numbers (see :func:`~snn.backends.torch_lowering.lower`);
            for a backward pass's coefficients, which may differ in rounding.
        binary_vars: tensor variables whose values are 0 or 1 (a spike).

    Raises:
        ValueError: an expression uses a variable named in neither list, or an operation the
            torch backend cannot compile.
    """
    tensor_names = tuple(tensor_vars)
    scalar_names = tuple(scalar_vars)
    known = set(tensor_names) | set(scalar_names)
    for e in outputs:
        unknown = variables(e) - known
        if unknown:
            raise ValueError(f"expression: variables {sorted(unknown)} are not inputs of the program")
    scalar_set = frozenset(scalar_names)
    binary_set = frozenset(binary_vars)

    def binary(e: Expr) -> bool:
        """Values 0 or 1 only."""
        if e.op == "var":
            return e.value in binary_set
        if e.op == "num":
            return e.value in (0.0, 1.0)
        if e.op in _MASKS:
            return True
        if e.op == "-" and e.args[0].op == "num" and e.args[0].value == 1.0:
            return binary(e.args[1])
        if e.op == "affine" and e.value == (-1.0, 1.0):
            return binary(e.args[0])
        if e.op == "keep":  # t (1 - b)
            return binary(e.args[0])
        return e.op == "*" and all(binary(a) for a in e.args)

    def is_scalar(e: Expr) -> bool:
        return e.op != "num" and variables(e) <= scalar_set

    def scalarish(e: Expr) -> bool:
        return e.op == "num" or is_scalar(e) or (e.op == "var" and e.value in scalar_set)

    outputs = keep_products(lower(outputs, scalar_names, affine), binary, scalarish)

    # post-order over the tensor part of the DAG, with use counts
    order: list[Expr] = []
    seen: set[int] = set()
    uses: dict[int, int] = {}
    scalars: list[Expr] = []
    scalar_index: dict[int, int] = {}

    def visit(e: Expr) -> None:
        if e.op in ("num", "var") or is_scalar(e):
            if is_scalar(e) and e.op != "var" and id(e) not in scalar_index:
                scalar_index[id(e)] = len(scalars) + len(scalar_names)
                scalars.append(e)
            return
        if id(e) in seen:
            return
        seen.add(id(e))
        for child in e.args:
            uses[id(child)] = uses.get(id(child), 0) + 1
            visit(child)
        order.append(e)

    for e in outputs:
        uses[id(e)] = uses.get(id(e), 0) + 1
        visit(e)
    output_ids = {id(e) for e in outputs}

    def operand_of(e: Expr) -> Operand:
        if e.op == "num":
            return ("num", float(e.value))
        if e.op == "var":
            if e.value in scalar_set:
                return ("sc", scalar_names.index(e.value))
            return ("in", tensor_names.index(e.value))
        if id(e) in scalar_index:
            return ("sc", scalar_index[id(e)])
        return ("node", id(e))

    def fusable(e: Expr) -> bool:
        """A child that may be folded into its parent: a tensor node used once, not an output."""
        return e.op not in ("num", "var") and not is_scalar(e) and uses.get(id(e), 0) == 1 and id(e) not in output_ids

    def exact_product(p: Expr, q: Expr) -> bool:
        """``p q`` is exact: a 0/1 factor, or a number that is zero or a power of two."""
        if binary(p) or binary(q):
            return True
        return any(f.op == "num" and (f.value == 0.0 or is_power_of_two(float(f.value))) for f in (p, q))

    fused: set[int] = set()
    plan: list[tuple[Expr, str, tuple[Expr, ...], Any]] = []
    for e in order:
        op, args, value = e.op, e.args, (e.value if e.op in ("pow", "affine") else None)
        if op in ("+", "-") and id(e) not in fused:
            a, b = args
            pick = fuse_sum(op, a, b, fusable, scalarish, None if affine else exact_product)
            if pick is not None:
                op, args, value, absorbed = pick
                fused.update(absorbed)
        plan.append((e, op, args, value))
    # then (c t) q -> addcmul(0, t, q, value=c): c t q rounded as (c t) q, in one pass
    for at, (e, op, args, _) in enumerate(plan):
        if op != "*" or id(e) in fused or any(scalarish(a) for a in args):
            continue
        for scaled, other in (args, args[::-1]):
            split = number_times_tensor(scaled, scalarish) if fusable(scaled) and id(scaled) not in fused else None
            if split is not None:
                plan[at] = (e, "scaledmul", (split[0], other), split[1])
                fused.add(id(scaled))
                break

    # then, for backward coefficients, alpha (b + v p q) + beta with b an affine of t -> one
    # addcmul(b', p, q, alpha v) with b' = alpha b + beta, the affine of t rewritten (re-associated);
    # and alpha (p q) + beta with p q a product of tensors used once -> one addcmul(beta, p, q, alpha)
    if affine:
        at_of = {id(entry[0]): index for index, entry in enumerate(plan)}
        for at, (e, op, args, value) in enumerate(plan):
            if op != "affine" or id(e) in fused or not fusable(args[0]) or id(args[0]) in fused:
                continue
            inner = plan[at_of[id(args[0])]] if id(args[0]) in at_of else None
            alpha, beta = value
            if inner is not None and inner[1] == "*" and not any(scalarish(a) for a in inner[2]):
                plan[at] = (e, "addcmul", (Expr("num", (), float(beta)), *inner[2]), float(alpha))
                fused.add(id(args[0]))
                continue
            if inner is None or inner[1] != "addcmul":
                continue
            base = inner[2][0]
            if not fusable(base) or id(base) in fused or id(base) not in at_of:
                continue
            base_at = at_of[id(base)]
            if plan[base_at][1] != "affine":
                continue
            a, b = plan[base_at][3]
            plan[base_at] = (base, "affine", plan[base_at][2], (alpha * a, alpha * b + beta))
            plan[at] = (e, "addcmul", inner[2], alpha * float(inner[3]))
            fused.add(id(args[0]))
    # then, for backward coefficients, c t (1 - t) -> one sigmoid_backward(c, t): rounded as
    # (c (1 - t)) t, which differs from (c t) (1 - t) in the last bit unless c is a power of 2
    if affine:
        for at, (e, op, args, value) in enumerate(plan):
            if op not in ("*", "scaledmul") or id(e) in fused or any(scalarish(a) for a in args):
                continue
            for t, q in (args, args[::-1]):
                if (fusable(q) and id(q) not in fused and q.op == "affine" and q.value == (-1.0, 1.0)
                        and q.args[0] is t):
                    plan[at] = (e, "tmt", (t,), float(value) if op == "scaledmul" else 1.0)
                    fused.add(id(q))
                    break

    # emit instructions (skipping nodes absorbed into a fused parent), with slot reuse
    emitted = [(e, op, args, value) for e, op, args, value in plan if id(e) not in fused]
    position = {id(e): i for i, (e, _, _, _) in enumerate(emitted)}
    last_use: dict[int, int] = {}
    for i, (_, _, args, _) in enumerate(emitted):
        for child in args:
            if id(child) in position:
                last_use[id(child)] = i
    for e in outputs:
        last_use[id(e)] = len(emitted)

    slot_is_bool: list[bool] = []
    free: dict[bool, list[int]] = {False: [], True: []}
    slot_of: dict[int, int] = {}
    output_slot = {id(e): k for k, e in reversed(list(enumerate(outputs)))}
    instructions: list[_Instruction] = []

    def resolve(e: Expr) -> Operand:
        operand = operand_of(e)
        if operand[0] != "node":
            return operand
        index = slot_of[id(e)]
        return ("slot", index) if index >= 0 else ("out", -1 - index)

    # An output's buffer never aliases an input (see Program.bind), so until the instruction that
    # writes the output, it may hold intermediates: a smaller working set than extra slots. An
    # operation may write over an operand it reads (elementwise), except the two-step lerp.
    producer = [len(emitted)] * len(outputs)
    for i, (e, op, _, _) in enumerate(emitted):
        k = output_slot.get(id(e))
        if k is not None and op not in _BOOL_OPS:
            producer[k] = i
    hosted_until = [-1] * len(outputs)  # last use of the intermediate each output buffer holds

    def output_host(i: int, e: Expr, op: str) -> int | None:
        end = last_use.get(id(e), i)
        for k, p in enumerate(producer):
            if p <= i or end > p or (end == p and emitted[p][1] == "lerp"):
                continue
            if hosted_until[k] < i or (hosted_until[k] == i and op != "lerp"):
                hosted_until[k] = end
                return k
        return None

    for i, (e, op, args, value) in enumerate(emitted):
        operands = tuple(resolve(c) for c in args)
        released = [
            index for child in {id(c): c for c in args}.values()
            if (index := slot_of.get(id(child))) is not None and index >= 0 and last_use.get(id(child)) == i
        ]
        if op != "lerp":  # lerp's result must not overwrite an operand it reads again
            for index in released:
                free[slot_is_bool[index]].append(index)
        if id(e) in output_slot and op not in _BOOL_OPS:
            out = -1 - output_slot[id(e)]
        else:
            is_bool = op in _BOOL_OPS
            host = None if is_bool else output_host(i, e, op)
            if host is not None:
                out = -1 - host
            elif free[is_bool]:
                out = free[is_bool].pop()
            else:
                out = len(slot_is_bool)
                slot_is_bool.append(is_bool)
        if op == "lerp":
            for index in released:
                free[slot_is_bool[index]].append(index)
        slot_of[id(e)] = out
        instructions.append(_Instruction(op, operands, out, value))

    results = tuple(resolve(e) for e in outputs)
    return Program(tensor_names, scalar_names, tuple(scalars), tuple(instructions), tuple(slot_is_bool), results)
