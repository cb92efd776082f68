"""A tiny expression language: one source of truth for surrogate derivatives and neuron updates.

Each surrogate writes its derivative once, as a Python function of an input ``x`` and a math
namespace ``ops`` (see :class:`snn.surrogate.SurrogateFunctionBase.derivative`); each neuron
model writes its per-step update once the same way (see :mod:`snn.models`). Evaluated with
:data:`TORCH_OPS` on tensors it is plain torch math; evaluated with :data:`SYMBOLIC_OPS` on
:func:`var` it yields an :class:`Expr` tree that kernel backends render to source with
:func:`render` (dialects ``"triton"``, ``"cuda"``, ``"c"`` and ``"c64"``) or, like the torch
backend, compile to tensor operations. The kernels therefore cannot drift from the torch math.

Trees can be differentiated (:func:`diff`, following the rules autograd applies to the same
torch operations), simplified exactly (:func:`simplify`), rewritten (:func:`substitute`),
inspected (:func:`variables`, :func:`operations`) and evaluated (:func:`evaluate`).

Numbers placed in source are checked finite and printed so that they round-trip exactly
(float32 values in hexadecimal for CUDA, ``repr`` of the float32 value for Triton). No user
string ever reaches the source: variable names come from the backend, numbers are floats.

Supported operations: ``+ - * /``, unary ``-``, ``**`` with a numeric exponent, comparisons
``< <= > >=``, ``&`` on comparisons, and ``ops.exp, log, abs, sqrt, sigmoid, cos, sin, relu,
where, minimum, maximum``; the constant ``ops.pi``.

The names live in four modules, imported here: ``_tree`` (the nodes and walks over them),
``_ops`` (the math namespaces), ``_render`` (kernel source) and ``_calculus`` (:func:`simplify`,
:func:`diff`, :func:`evaluate`).
"""

from __future__ import annotations

from snn.expr._calculus import diff, evaluate, simplify
from snn.expr._ops import FLOAT_OPS, SYMBOLIC_OPS, TORCH_OPS, FloatOps, SymbolicOps, TorchOps, torch_ops
from snn.expr._render import float32_literal, render
from snn.expr._tree import Expr, nodes, num, operations, replace_nodes, substitute, var, variables

__all__ = [
    "Expr",
    "var",
    "num",
    "TorchOps",
    "SymbolicOps",
    "FloatOps",
    "TORCH_OPS",
    "torch_ops",
    "SYMBOLIC_OPS",
    "FLOAT_OPS",
    "render",
    "float32_literal",
    "diff",
    "simplify",
    "substitute",
    "replace_nodes",
    "nodes",
    "variables",
    "operations",
    "evaluate",
]
