"""The NIR node of each leaf module: the parameter mapping of :func:`snn.nir.export_to_nir`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from snn import layer, neuron
from snn.base import StepModule
from snn.errors import NIRConversionError
from snn.layer.wrappers import StepModeWrapper
from snn.nir._common import METADATA_KEY, heaviside_mismatch, surrogate_metadata
from snn.nir.modules import CubaLINode, Delay, LINode, Scale, SumPool2d, Threshold
from snn.surrogate import SurrogateFunctionBase

__all__ = ["LeafMapper", "Shape", "as_numpy", "no_node_reason"]

Shape = tuple[int, ...]


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _full(shape: Shape, value: float | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return np.ascontiguousarray(np.broadcast_to(as_numpy(value).astype(np.float64), shape))
    return np.full(shape, float(value), dtype=np.float64)


def _torch_forward(module: nn.Module, torch_cls: type[nn.Module]) -> bool:
    """``module`` computes what ``torch_cls`` computes (its own forward or snn's step-mode wrapper)."""
    forward = type(module).forward
    return forward is torch_cls.forward or forward is StepModeWrapper.forward


class LeafMapper:
    """Maps one leaf module (with the shapes of one sample) to a NIR node.

    Every mapper takes ``(module, where, in_shape, out_shape, lead)``: ``where`` names the module
    in errors, the shapes exclude the ``lead`` batch/time dimensions.
    """

    nir: Any
    dt: float

    def flatten_node(self, where: str, shape: Shape, start: int, end: int, lead: int) -> tuple[Any, Shape]:
        """A NIR ``Flatten`` for torch dims ``start``, ``end`` over ``lead`` + ``shape`` dims."""
        rank = lead + len(shape)
        s, e = start % rank if start < 0 else start, end % rank if end < 0 else end
        if s < lead or e < s or e >= rank:
            raise NIRConversionError(where, f"flattening dims {start}..{end} touches the batch/time dimensions")
        nir_start, nir_end = s - lead, e - lead
        out = (*shape[:nir_start], int(np.prod(shape[nir_start : nir_end + 1])), *shape[nir_end + 1 :])
        node = self.nir.Flatten(input_type=np.array(shape, dtype=np.int64), start_dim=nir_start, end_dim=nir_end)
        return node, out

    # -- leaves ------------------------------------------------------------------------------

    def leaf_mapper(self, module: nn.Module) -> Callable[..., Any] | None:
        kind = type(module)
        if kind in _EXACT_LEAVES:
            return getattr(self, _EXACT_LEAVES[kind])
        cuba = getattr(neuron, "CUBALIFNode", None)
        if cuba is not None and kind is cuba:
            return self.cuba_lif
        for torch_cls, method in _TORCH_LEAVES:
            if isinstance(module, torch_cls) and _torch_forward(module, torch_cls):
                return getattr(self, method)
        return None

    def linear(self, module: nn.Linear, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        if len(in_shape) != 1:
            hint = (
                " (the network is in step mode 'm', so example_input is read as [T, N, *])"
                if lead == 2 and not in_shape else ""
            )
            raise NIRConversionError(where, f"NIR's Affine takes one-dimensional samples, got {list(in_shape)}{hint}")
        weight = as_numpy(module.weight).astype(np.float64)
        if module.bias is None:
            return self.nir.Linear(weight)
        return self.nir.Affine(weight, as_numpy(module.bias).astype(np.float64))

    def conv(self, module: nn.Conv1d | nn.Conv2d, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        if module.padding_mode != "zeros":
            raise NIRConversionError(where, f"padding_mode={module.padding_mode!r}: NIR convolutions pad with zeros only")
        if module.groups != 1:
            raise NIRConversionError(
                where,
                f"groups={module.groups}: NIR's type checks take the weight's second dimension as the input channels, "
                "so a grouped convolution does not type-check",
            )
        weight = as_numpy(module.weight).astype(np.float64)
        bias = as_numpy(module.bias).astype(np.float64) if module.bias is not None else np.zeros(weight.shape[0])
        padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        if isinstance(module, nn.Conv1d):
            node = self.nir.Conv1d(
                input_shape=int(in_shape[-1]), weight=weight, stride=int(module.stride[0]),
                padding=padding if isinstance(padding, str) else int(padding[0]),
                dilation=int(module.dilation[0]), groups=int(module.groups), bias=bias,
            )
        else:
            node = self.nir.Conv2d(
                input_shape=tuple(int(d) for d in in_shape[-2:]), weight=weight, stride=tuple(module.stride),
                padding=padding, dilation=tuple(module.dilation), groups=int(module.groups), bias=bias,
            )
        # nir (1.0.8) computes a Conv2d's output size from weight.shape[2] in both dimensions, which
        # is wrong for a non-square kernel: state the size the example run produced instead
        node.output_type = {"output": np.array(out_shape, dtype=np.int64)}
        return node

    def avgpool2d(self, module: nn.AvgPool2d, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        pair = nn.modules.utils._pair
        kernel, stride, padding = pair(module.kernel_size), pair(module.stride), pair(module.padding)
        if module.ceil_mode:
            raise NIRConversionError(where, "ceil_mode=True: NIR pooling windows stay inside the input")
        arrays = {
            "kernel_size": np.array(kernel, dtype=np.int64),
            "stride": np.array(stride, dtype=np.int64),
            "padding": np.array(padding, dtype=np.int64),
        }
        if module.divisor_override == 1:
            return self.nir.SumPool2d(**arrays)
        if module.divisor_override is not None:
            raise NIRConversionError(where, f"divisor_override={module.divisor_override}: NIR pools by average or sum only")
        if not module.count_include_pad and any(padding):
            raise NIRConversionError(where, "count_include_pad=False with padding: NIR's AvgPool2d divides by the window size")
        return self.nir.AvgPool2d(**arrays)

    def flatten(self, module: nn.Flatten, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        if isinstance(module, StepModule):  # snn.layer.Flatten counts the dimensions of one step
            lead = 1
            start, end = module.start_dim, module.end_dim
        else:
            start, end = module.start_dim, module.end_dim
        return self.flatten_node(where, in_shape, start, end, lead)[0]

    def scale(self, module: Scale, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        return self.nir.Scale(_full(in_shape, module.scale))

    def threshold(self, module: Threshold, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        metadata = {METADATA_KEY: {"module": "Threshold", **self._surrogate(module.surrogate_function, where)}}
        return self.nir.Threshold(_full(in_shape, module.threshold), metadata=metadata)

    def delay(self, module: Delay, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        steps = np.broadcast_to(as_numpy(module.delay_steps).astype(np.float64), in_shape)
        return self.nir.Delay(np.ascontiguousarray(steps * self.dt))

    def li(self, module: LINode, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        tau = module.tau
        return self.nir.LI(
            tau=_full(out_shape, tau * self.dt), r=_full(out_shape, 1.0 if module.decay_input else tau),
            v_leak=_full(out_shape, module.v_leak),
        )

    def cuba_li(self, module: CubaLINode, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        tau_syn, tau_mem = self._cuba_taus(module, where)
        return self.nir.CubaLI(
            tau_syn=_full(out_shape, tau_syn), tau_mem=_full(out_shape, tau_mem), r=_full(out_shape, tau_mem / self.dt),
            v_leak=_full(out_shape, module.v_leak), w_in=_full(out_shape, tau_syn / self.dt),
        )

    def _cuba_taus(self, module: Any, where: str) -> tuple[float, float]:  # any module with c_decay, v_decay
        c_decay, v_decay = float(module.c_decay), float(module.v_decay)
        for name, value in (("c_decay", c_decay), ("v_decay", v_decay)):
            if not 0.0 <= value < 1.0:
                raise NIRConversionError(
                    where, f"{name}={value!r}: NIR time constants are finite (tau = dt / (1 - decay) needs decay in [0, 1))"
                )
        return self.dt / (1.0 - c_decay), self.dt / (1.0 - v_decay)

    # -- neurons -----------------------------------------------------------------------------

    def _surrogate(self, surrogate: Any, where: str) -> dict[str, Any]:
        if not isinstance(surrogate, SurrogateFunctionBase):
            raise NIRConversionError(
                where,
                f"surrogate_function is {type(surrogate).__name__}, not an snn.surrogate class: snn cannot tell "
                "whether it fires with the Heaviside step NIR assumes (use an snn.surrogate function)",
            )
        mismatch = heaviside_mismatch(surrogate)
        if mismatch is not None:
            raise NIRConversionError(
                where, f"surrogate {type(surrogate).__name__} {mismatch}: NIR neurons fire with a Heaviside step"
            )
        return surrogate_metadata(surrogate)

    def _neuron(self, module: neuron.BaseNode, where: str, shape: Shape) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """NIR ``v_threshold`` / ``v_reset`` arrays and the ``snn`` metadata of a spiking neuron."""
        if module.v_reset is None:
            raise NIRConversionError(
                where,
                "soft reset (v_reset=None): NIR neurons reset to v_reset after a spike and cannot subtract the "
                "threshold; export a neuron with a hard reset (e.g. v_reset=0.0)",
            )
        if isinstance(module.v_reset, torch.Tensor):
            raise NIRConversionError(where, "a tensor v_reset: snn's importer needs one reset potential per layer")
        try:
            thresholds = _full(shape, module.v_threshold)
        except ValueError as exc:
            raise NIRConversionError(where, f"v_threshold does not broadcast to the layer's shape {list(shape)}") from exc
        meta = {"module": type(module).__name__, **self._surrogate(module.surrogate_function, where)}
        meta["detach_reset"] = bool(module.detach_reset)
        return {"v_threshold": thresholds, "v_reset": _full(shape, module.v_reset)}, {METADATA_KEY: meta}

    def if_node(self, module: neuron.IFNode, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        levels, metadata = self._neuron(module, where, out_shape)
        return self.nir.IF(r=_full(out_shape, 1.0 / self.dt), **levels, metadata=metadata)

    def _lif(self, module: neuron.BaseNode, tau: float, where: str, shape: Shape, extra: dict[str, Any]) -> Any:
        levels, metadata = self._neuron(module, where, shape)
        metadata[METADATA_KEY].update(extra)
        return self.nir.LIF(
            tau=_full(shape, tau * self.dt), r=_full(shape, 1.0 if module.decay_input else tau),
            v_leak=levels["v_reset"].copy(), **levels, metadata=metadata,
        )

    def lif(self, module: neuron.LIFNode, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        return self._lif(module, float(module.tau), where, out_shape, {})

    def plif(self, module: neuron.ParametricLIFNode, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        w = float(module.w.detach())
        try:
            tau = 1.0 + math.exp(-w)
        except OverflowError as exc:  # w below about -709
            raise NIRConversionError(where, f"w = {w!r}: the time constant 1 / sigmoid(w) is beyond float64") from exc
        # decay_input is recorded: when w is large, tau rounds to 1 and r = 1 no longer tells it apart
        return self._lif(module, tau, where, out_shape, {"w": w, "decay_input": bool(module.decay_input)})

    def cuba_lif(self, module: nn.Module, where: str, in_shape: Shape, out_shape: Shape, lead: int) -> Any:
        levels, metadata = self._neuron(module, where, out_shape)  # type: ignore[arg-type]  # a CUBALIFNode, which is a BaseNode
        tau_syn, tau_mem = self._cuba_taus(module, where)
        return self.nir.CubaLIF(
            tau_syn=_full(out_shape, tau_syn), tau_mem=_full(out_shape, tau_mem), r=_full(out_shape, tau_mem / self.dt),
            v_leak=np.zeros(out_shape), w_in=_full(out_shape, tau_syn / self.dt), **levels, metadata=metadata,
        )


_EXACT_LEAVES: dict[type, str] = {
    neuron.IFNode: "if_node",
    neuron.LIFNode: "lif",
    neuron.ParametricLIFNode: "plif",
    LINode: "li",
    CubaLINode: "cuba_li",
    Scale: "scale",
    Threshold: "threshold",
    Delay: "delay",
    SumPool2d: "avgpool2d",
}

#: torch layers (and their snn step-mode wrappers), most specific first
_TORCH_LEAVES: tuple[tuple[type, str], ...] = (
    (nn.Linear, "linear"),
    (nn.Conv1d, "conv"),
    (nn.Conv2d, "conv"),
    (nn.AvgPool2d, "avgpool2d"),
    (nn.Flatten, "flatten"),
)


def no_node_reason(module: nn.Module) -> str:
    kind = type(module)
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
        return "NIR has no normalisation node; fold it into the preceding convolution or linear layer before export"
    if isinstance(module, (neuron.BaseNode, LINode, CubaLINode)):
        model = getattr(kind, "model", None)
        if kind.__module__.startswith("snn.") and model is not None:
            # one of snn's own neurons (QIF, EIF, Izhikevich, KLIF): its dynamics are known
            return f"NIR has no node for the {model.name!r} neuron model of {kind.__name__}"
        return (
            f"{kind.__name__} is a subclass of an snn neuron; snn cannot tell whether its dynamics are its base's, "
            "so it has no NIR node"
        )
    if isinstance(module, (layer.TLastMultiStepContainer, layer.TLastSeqToANNContainer)):
        return "it keeps only the last time step; NIR nodes produce an output every step"
    if isinstance(module, nn.Conv3d):
        return "NIR has convolutions in 1 and 2 dimensions only"
    return f"NIR has no node for {kind.__name__}"
