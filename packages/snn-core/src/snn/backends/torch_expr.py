"""Surrogate derivatives compiled to allocation-free torch programs.

:func:`snn.surrogate.derivative_function` evaluates a surrogate's derivative with ordinary
tensor arithmetic, which allocates a fresh tensor for every operation. The torch backend's
backward pass evaluates the derivative once per time step, so it compiles the same expression
tree (:func:`snn.surrogate.derivative_expression`, the single source of the math) into a short
program of ``out=`` operations on a few preallocated rows instead.

Each operation mirrors what the tensor operators do when the derivative is evaluated directly
(``number - t`` as one subtraction, ``number / t`` as ``reciprocal(t) * number`` like
``Tensor.__rtruediv__``, ``minimum(t, c)`` as ``clamp``), so both evaluations agree bit for bit.

Example:
    >>> import torch
    >>> from snn import surrogate
    >>> from snn.backends.torch_expr import compile_derivative
    >>> run = compile_derivative(surrogate.Sigmoid().spec).bind(torch.zeros(3))
    >>> run(torch.tensor([-1.0, 0.0, 1.0]))
    tensor([0.0707, 1.0000, 0.0707])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from snn.expr import Expr
from snn.kernels import SurrogateSpec

__all__ = ["DerivativeProgram", "compile_derivative"]

_COMPARE = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_UNARY = {
    "exp": torch.exp, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt,
    "sigmoid": torch.sigmoid, "cos": torch.cos, "neg": torch.neg,
}
_BOOL_OPS = frozenset(_COMPARE) | {"and"}

# An operand: ("var",), ("num", value) or ("slot", index).
Operand = tuple[Any, ...]


@dataclass(frozen=True)
class _Instruction:
    op: str
    args: tuple[Operand, ...]
    out: int
    value: Any = None


@dataclass(frozen=True)
class DerivativeProgram:
    """A compiled derivative: instructions over numbered float / bool slots.

    Attributes:
        instructions: operations in evaluation order.
        slot_is_bool: whether each slot holds a bool mask.
        result: the operand holding ``g(x)``.
    """

    instructions: tuple[_Instruction, ...]
    slot_is_bool: tuple[bool, ...]
    result: Operand

    def bind(self, like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Allocate the slots for inputs shaped like ``like`` and return ``x -> g(x)``.

        The returned tensor is a slot: it stays valid until the next call. ``x`` must have
        ``like``'s shape, dtype and device (float32 or float64).
        """
        shape, dtype, device = like.shape, like.dtype, like.device
        slots = [
            torch.empty(shape, dtype=torch.bool if is_bool else dtype, device=device)
            for is_bool in self.slot_is_bool
        ]
        scalars: dict[float, torch.Tensor] = {}

        def scalar(value: float) -> torch.Tensor:
            found = scalars.get(value)
            if found is None:
                found = scalars[value] = torch.tensor(value, dtype=dtype, device=device)
            return found

        steps = [self._bind_one(ins, slots, scalar) for ins in self.instructions]
        kind = self.result[0]
        if kind == "slot":
            out = slots[self.result[1]]

            def run(x: torch.Tensor) -> torch.Tensor:
                for step in steps:
                    step(x)
                return out

            return run
        if kind == "num":
            constant = torch.full(shape, float(self.result[1]), dtype=dtype, device=device)
            return lambda x: constant
        return lambda x: x

    @staticmethod
    def _bind_one(
        ins: _Instruction, slots: list[torch.Tensor], scalar: Callable[[float], torch.Tensor]
    ) -> Callable[[torch.Tensor], Any]:
        out = slots[ins.out]
        op = ins.op

        def operand(arg: Operand) -> Callable[[torch.Tensor], Any]:
            if arg[0] == "var":
                return lambda x: x
            if arg[0] == "slot":
                tensor = slots[arg[1]]
                return lambda x: tensor
            number = float(arg[1])
            return lambda x: number

        fetch = [operand(a) for a in ins.args]
        kinds = [a[0] for a in ins.args]
        if op in _UNARY:
            fn = _UNARY[op]
            (a,) = fetch
            return lambda x: fn(a(x), out=out)
        if op == "pow":
            (a,) = fetch
            exponent = ins.value
            return lambda x: torch.pow(a(x), exponent, out=out)
        if op == "where":
            # constant branches become 0-dim tensors of the compute dtype, as in snn.surrogate
            c, a, b = (
                _constant(scalar(float(arg[1]))) if arg[0] == "num" else f
                for arg, f in zip(ins.args, fetch)
            )
            return lambda x: torch.where(c(x), a(x), b(x), out=out)
        if op == "and":
            a, b = fetch
            return lambda x: torch.logical_and(a(x), b(x), out=out)
        a, b = fetch
        left_number, right_number = kinds[0] == "num", kinds[1] == "num"
        if op in _COMPARE:
            if left_number:  # c < t  is  t > c
                fn = _COMPARE[_FLIPPED[op]]
                return lambda x: fn(b(x), a(x), out=out)
            fn = _COMPARE[op]
            return lambda x: fn(a(x), b(x), out=out)
        if op in ("+", "*"):
            fn = torch.add if op == "+" else torch.mul
            if left_number:  # c + t and c * t evaluate as t + c, t * c
                return lambda x: fn(b(x), a(x), out=out)
            return lambda x: fn(a(x), b(x), out=out)
        if op == "-":
            if left_number:  # c - t: one rounding, like Tensor.__rsub__
                c = scalar(float(ins.args[0][1]))
                return lambda x: torch.sub(c, b(x), out=out)
            return lambda x: torch.sub(a(x), b(x), out=out)
        if op == "/":
            if left_number:  # c / t is reciprocal(t) * c, like Tensor.__rtruediv__
                number = float(ins.args[0][1])

                def divide_into(x: torch.Tensor) -> None:
                    torch.reciprocal(b(x), out=out)
                    out.mul_(number)

                return divide_into
            return lambda x: torch.div(a(x), b(x), out=out)
        if op in ("minimum", "maximum"):
            if left_number or right_number:  # with a constant: clamp, as snn.expr.TorchOps does
                t, c = (b, float(ins.args[0][1])) if left_number else (a, float(ins.args[1][1]))
                if op == "minimum":
                    return lambda x: torch.clamp(t(x), max=c, out=out)
                return lambda x: torch.clamp(t(x), min=c, out=out)
            fn = torch.minimum if op == "minimum" else torch.maximum
            return lambda x: fn(a(x), b(x), out=out)
        raise ValueError(f"expression: cannot compile operation {op!r} for the torch backend")


def _constant(value: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: value


def _compile(expr: Expr) -> DerivativeProgram:
    order: list[Expr] = []
    seen: set[int] = set()

    def visit(e: Expr) -> None:
        if id(e) in seen or e.op in ("num", "var"):
            return
        for child in e.args:
            visit(child)
        seen.add(id(e))
        order.append(e)

    visit(expr)
    position = {id(e): i for i, e in enumerate(order)}
    last_use: dict[int, int] = {}
    for i, e in enumerate(order):
        for child in e.args:
            if id(child) in position:
                last_use[id(child)] = i
    last_use[id(expr)] = len(order)  # the result lives to the end

    slot_is_bool: list[bool] = []
    free: dict[bool, list[int]] = {False: [], True: []}
    slot_of: dict[int, int] = {}
    instructions = []

    def operand(e: Expr) -> Operand:
        if e.op == "num":
            return ("num", float(e.value))
        if e.op == "var":
            return ("var",)
        return ("slot", slot_of[id(e)])

    for i, e in enumerate(order):
        args = tuple(operand(c) for c in e.args)
        # operands used for the last time free their slots first: the output may reuse one
        # (elementwise operations may write over an input of the same shape)
        for child in {id(c): c for c in e.args}.values():
            if id(child) in slot_of and last_use.get(id(child)) == i:
                index = slot_of[id(child)]
                free[slot_is_bool[index]].append(index)
        is_bool = e.op in _BOOL_OPS
        if free[is_bool]:
            out = free[is_bool].pop()
        else:
            out = len(slot_is_bool)
            slot_is_bool.append(is_bool)
        slot_of[id(e)] = out
        instructions.append(_Instruction(e.op, args, out, e.value if e.op == "pow" else None))
    return DerivativeProgram(tuple(instructions), tuple(slot_is_bool), operand(expr))


@lru_cache(maxsize=256)
def compile_derivative(spec: SurrogateSpec) -> DerivativeProgram:
    """The derivative of surrogate ``spec`` as a :class:`DerivativeProgram` (cached per spec).

    Raises:
        TypeError, ValueError: as :func:`snn.surrogate.derivative_expression`.
    """
    from snn.surrogate import derivative_expression

    return _compile(derivative_expression(spec))
