"""Monitors: record what chosen layers of a network compute, through torch hooks.

A monitor hooks every submodule of ``net`` that is an instance of ``instance`` (default: the
type of ``net`` itself) and records, on each call,

- :class:`OutputMonitor`: the module's output (forward hook);
- :class:`InputMonitor`: its input (forward pre-hook);
- :class:`AttributeMonitor`: one of its attributes, e.g. a neuron's membrane potential ``v``,
  before or after the forward call;
- :class:`GradOutputMonitor` / :class:`GradInputMonitor`: the gradient with respect to its
  output / input in backward (full backward hook).

A one-element tuple is unpacked to its element; the value is passed through the monitor's
``function_on_*`` (identity by default: the recorded tensors keep their autograd graph, which
lets a loss use them; pass ``lambda x: x.detach()`` to keep only values, or a reduction such as
:func:`firing_rate` to keep memory small). Records are kept in call order in
:attr:`BaseMonitor.records`; ``monitor[i]`` is the ``i``-th record and ``monitor[name]`` the
records of the layer ``name`` (its name in ``net.named_modules()``).

:meth:`~BaseMonitor.disable` pauses recording, :meth:`~BaseMonitor.enable` resumes it,
:meth:`~BaseMonitor.clear_recorded_data` drops the records and
:meth:`~BaseMonitor.remove_hooks` (or :meth:`~BaseMonitor.close`, or leaving a ``with`` block)
detaches the monitor from the network. The network never keeps a monitor alive: its hooks hold
the monitor through a weak reference, so a monitor that is no longer referenced removes its
hooks and frees its records (the reference library's monitors live, and record, as long as the
network does).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from snn import functional, layer, monitor, neuron
    >>> net = nn.Sequential(layer.Linear(4, 3), neuron.IFNode(), layer.Linear(3, 2), neuron.IFNode())
    >>> functional.set_step_mode(net, "m")
    >>> with monitor.OutputMonitor(net, neuron.IFNode) as spikes:
    ...     _ = net(torch.rand(5, 2, 4))
    ...     print(spikes.monitored_layers, [tuple(r.shape) for r in spikes.records])
    ['1', '3'] [(5, 2, 3), (5, 2, 2)]
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from snn.neuron.base import check_flag

__all__ = [
    "BaseMonitor",
    "OutputMonitor",
    "InputMonitor",
    "AttributeMonitor",
    "GradInputMonitor",
    "GradOutputMonitor",
    "firing_rate",
    "firing_rates",
    "paused",
]


#: True while :func:`paused` holds: every monitor's hooks record nothing.
_PAUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("snn_monitors_paused", default=False)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Within the block, no monitor records (in this thread or task): for a library's own
    forward passes through a user's network, such as :func:`snn.nir.export_to_nir` running its
    example input, which must not add to the user's records."""
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def _identity(x: Any) -> Any:
    return x


def _unpack_single(x: Any) -> Any:
    """A one-element tuple becomes its element; anything else is returned as it is."""
    if isinstance(x, tuple) and len(x) == 1:
        return x[0]
    return x


def _check_callable(name: str, function: Any) -> Callable[[Any], Any]:
    if not callable(function):
        raise TypeError(f"{name}: expected a callable, got {type(function).__name__}")
    return function


def _remove_handles(handles: list[RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


class BaseMonitor:
    """Records and hook bookkeeping shared by every monitor.

    Attributes:
        hooks: the :class:`torch.utils.hooks.RemovableHandle` of every installed hook.
        monitored_layers: names (in ``net.named_modules()``) of the monitored modules, in order.
        records: every recorded value, in call order.
        name_records_index: ``name -> indices into records`` of each monitored module.
    """

    def __init__(self) -> None:
        self.hooks: list[RemovableHandle] = []
        self.monitored_layers: list[str] = []
        self.records: list[Any] = []
        self.name_records_index: dict[str, list[int]] = {}
        self._enable = True
        # Removes the hooks when the monitor is garbage-collected (the hooks only hold a weak
        # reference to it); holds the handle list, never the monitor.
        self._finalizer = weakref.finalize(self, _remove_handles, self.hooks)

    def __getitem__(self, key: int | str) -> Any:
        """``monitor[i]``: the ``i``-th record; ``monitor[name]``: the list of records of layer ``name``.

        Raises:
            TypeError: ``key`` is neither an int nor a str.
            KeyError: ``name`` is not a monitored layer.
            IndexError: ``i`` is out of range.
        """
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"key: expected a record index (int) or a layer name (str), got {type(key).__name__}")
        if isinstance(key, int):
            return self.records[key]
        if key not in self.name_records_index:
            raise KeyError(f"{key!r} is not a monitored layer; monitored: {self.monitored_layers}")
        return [self.records[index] for index in self.name_records_index[key]]

    def _monitor_modules(self, net: Any, instance: Any) -> list[tuple[str, nn.Module]]:
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        if instance is None:
            instance = type(net)
        types = instance if isinstance(instance, tuple) else (instance,)
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError(f"instance: expected a class or a tuple of classes, got {instance!r}")
        modules = [(name, module) for name, module in net.named_modules() if isinstance(module, types)]
        for name, _ in modules:
            self.monitored_layers.append(name)
            self.name_records_index[name] = []
        return modules

    def create_hook(self, name: str) -> Callable[..., None]:
        """The torch hook installed on the monitored layer ``name``.

        It records this monitor's value (the output, input, attribute or gradient) while the
        monitor lives and is enabled; it holds the monitor through a weak reference. A subclass
        overrides this to record something else, as in SpikingJelly: the returned hook receives
        torch's hook arguments (``(module, args, output)`` for a forward hook, ``(module, args)``
        for a pre-hook, ``(module, grad_input, grad_output)`` for a backward hook) and records
        with ``self._record(name, value)`` (or by appending to :attr:`records` and
        ``name_records_index[name]``).
        """
        monitor_ref = weakref.ref(self)

        def hook(module: nn.Module, *args: Any) -> None:
            monitor = monitor_ref()
            if monitor is not None and monitor._enable and not _PAUSED.get():
                monitor._record(name, monitor._value(module, args))

        return hook

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        """The value a hook records, from the hook's arguments after the module."""
        raise NotImplementedError(f"{type(self).__name__}: a monitor records through create_hook or _value")

    def _record(self, name: str, value: Any) -> None:
        if _PAUSED.get():  # a subclass's own hook (see create_hook) records through here
            return
        self.name_records_index[name].append(len(self.records))
        self.records.append(value)

    def clear_recorded_data(self) -> None:
        """Drop every record (the hooks stay installed)."""
        self.records.clear()
        for indices in self.name_records_index.values():
            indices.clear()

    def enable(self) -> None:
        """Resume recording."""
        self._enable = True

    def disable(self) -> None:
        """Pause recording (the hooks stay installed and do nothing)."""
        self._enable = False

    def is_enable(self) -> bool:
        """Whether the monitor records."""
        return self._enable

    def remove_hooks(self) -> None:
        """Remove every hook from the network (the records stay until cleared)."""
        _remove_handles(self.hooks)

    def close(self) -> None:
        """Stop recording and remove the hooks."""
        self.disable()
        self.remove_hooks()

    def __enter__(self) -> BaseMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class OutputMonitor(BaseMonitor):
    """Record the output of every ``instance`` module of ``net`` on each forward call.

    Args:
        net: the network.
        instance: the class (or tuple of classes) of the modules to monitor; ``None`` monitors
            modules of ``type(net)``, i.e. usually ``net`` itself.
        function_on_output: applied to each output before it is recorded.

    Raises:
        TypeError: ``net`` is not a module, ``instance`` not a class or tuple of classes, or
            ``function_on_output`` not callable.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_output: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_output = _check_callable("function_on_output", function_on_output)
        for name, module in self._monitor_modules(net, instance):
            self.hooks.append(module.register_forward_hook(self.create_hook(name)))

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        return self.function_on_output(_unpack_single(args[1]))


class InputMonitor(BaseMonitor):
    """Record the input of every ``instance`` module of ``net`` on each forward call.

    A module called with one positional argument records that argument; with several, their
    tuple.

    Args:
        net: the network.
        instance: the class (or tuple of classes) of the modules to monitor (``None``:
            ``type(net)``).
        function_on_input: applied to each input before it is recorded.

    Raises:
        TypeError: as :class:`OutputMonitor`.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_input: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_input = _check_callable("function_on_input", function_on_input)
        for name, module in self._monitor_modules(net, instance):
            self.hooks.append(module.register_forward_pre_hook(self.create_hook(name)))

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        return self.function_on_input(_unpack_single(args[0]))


class AttributeMonitor(BaseMonitor):
    """Record an attribute of every ``instance`` module, before or after each forward call.

    For a neuron, ``AttributeMonitor("v", False, net, neuron.LIFNode)`` records the membrane
    potential after each call: after every step in step mode ``'s'``, after the last step of the
    sequence in step mode ``'m'`` (use ``store_v_seq=True`` and ``"v_seq"`` for every step).

    Args:
        attribute_name: the attribute to read (``getattr(module, attribute_name)``).
        pre_forward: read it before the forward call (forward pre-hook) instead of after.
        net: the network.
        instance: the class (or tuple of classes) of the modules to monitor (``None``:
            ``type(net)``).
        function_on_attribute: applied to each value before it is recorded.

    Raises:
        TypeError: ``attribute_name`` is not a str, ``pre_forward`` not a bool (or 0 or 1), or as
            :class:`OutputMonitor`.
    """

    def __init__(
        self,
        attribute_name: str,
        pre_forward: bool,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_attribute: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        if not isinstance(attribute_name, str):
            raise TypeError(f"attribute_name: expected a str, got {type(attribute_name).__name__}")
        pre_forward = check_flag("pre_forward", pre_forward, integers=True)
        self.attribute_name = attribute_name
        self.pre_forward = pre_forward
        self.function_on_attribute = _check_callable("function_on_attribute", function_on_attribute)
        for name, module in self._monitor_modules(net, instance):
            hook = self.create_hook(name)
            handle = module.register_forward_pre_hook(hook) if pre_forward else module.register_forward_hook(hook)
            self.hooks.append(handle)

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        return self.function_on_attribute(getattr(module, self.attribute_name))


class GradInputMonitor(BaseMonitor):
    """Record the gradient with respect to the input of every ``instance`` module in backward.

    Uses :meth:`torch.nn.Module.register_full_backward_hook`: one record per backward pass
    through each forward call, in backward order (the last layer first); an input that needs no
    gradient has ``None``.

    Args:
        net: the network.
        instance: the class (or tuple of classes) of the modules to monitor (``None``:
            ``type(net)``).
        function_on_grad_input: applied to each gradient before it is recorded.

    Raises:
        TypeError: as :class:`OutputMonitor`.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_grad_input: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_grad_input = _check_callable("function_on_grad_input", function_on_grad_input)
        for name, module in self._monitor_modules(net, instance):
            self.hooks.append(module.register_full_backward_hook(self.create_hook(name)))

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        return self.function_on_grad_input(_unpack_single(args[0]))


class GradOutputMonitor(BaseMonitor):
    """Record the gradient with respect to the output of every ``instance`` module in backward.

    Uses :meth:`torch.nn.Module.register_full_backward_hook`: one record per backward pass
    through each forward call, in backward order (the last layer first).

    Args:
        net: the network.
        instance: the class (or tuple of classes) of the modules to monitor (``None``:
            ``type(net)``).
        function_on_grad_output: applied to each gradient before it is recorded.

    Raises:
        TypeError: as :class:`OutputMonitor`.
    """

    def __init__(
        self,
        net: nn.Module,
        instance: type | tuple[type, ...] | None = None,
        function_on_grad_output: Callable[[Any], Any] = _identity,
    ) -> None:
        super().__init__()
        self.function_on_grad_output = _check_callable("function_on_grad_output", function_on_grad_output)
        for name, module in self._monitor_modules(net, instance):
            self.hooks.append(module.register_full_backward_hook(self.create_hook(name)))

    def _value(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        return self.function_on_grad_output(_unpack_single(args[1]))


# -- firing rates ----------------------------------------------------------------------------


def firing_rate(spikes: torch.Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> torch.Tensor:
    """The firing rate of ``spikes``: their mean over ``dim`` (every dimension by default).

    ``firing_rate(s_seq, dim=0)`` is each neuron's rate over the ``T`` steps of ``s_seq [T, N, *]``;
    ``firing_rate(s)`` the rate of the whole layer. As ``function_on_output`` of an
    :class:`OutputMonitor` it records one number per call instead of the spikes.

    Args:
        spikes: spikes (0/1, or spike counts), floating or bool.
        dim: the dimension(s) to average over, each in ``[-rank, rank)`` (``[-1, 0]`` for a
            0-dim tensor) and none twice (``-1`` and ``rank - 1`` are the same); ints or NumPy
            integers; ``None`` (or an empty sequence, as :meth:`torch.Tensor.mean`) for all.
        keepdim: keep the averaged dimensions with size 1.

    Returns:
        The mean, in ``spikes``' dtype (the default floating dtype for bool spikes).

    Raises:
        TypeError: ``spikes`` is not a floating or bool tensor, ``dim`` not ints, ``keepdim``
            not a bool.
        ValueError: ``spikes`` is empty, a ``dim`` is out of range for ``spikes``' rank, or a
            dimension is named twice.

    Example:
        >>> import torch
        >>> from snn.monitor import firing_rate
        >>> s_seq = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # [T=4, 2 neurons]
        >>> firing_rate(s_seq, dim=0), firing_rate(s_seq)
        (tensor([0.7500, 0.2500]), tensor(0.5000))
    """
    if not isinstance(spikes, torch.Tensor):
        raise TypeError(f"spikes: expected a floating or bool torch.Tensor, got {type(spikes).__name__}")
    if spikes.dtype == torch.bool:
        spikes = spikes.to(torch.get_default_dtype())
    elif not spikes.is_floating_point():
        raise TypeError(f"spikes: expected a floating or bool tensor, got dtype {spikes.dtype}")
    if spikes.numel() == 0:
        raise ValueError(f"spikes: expected a non-empty tensor, got shape {list(spikes.shape)}")
    if not isinstance(keepdim, bool):
        raise TypeError(f"keepdim: expected a bool, got {type(keepdim).__name__}")
    if dim is None:
        return spikes.mean(dim=tuple(range(spikes.dim())), keepdim=keepdim) if keepdim else spikes.mean()
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        return spikes.mean(dim=_checked_dims(spikes, (dim,), dim)[0], keepdim=keepdim)
    dims = tuple(dim) if isinstance(dim, Iterable) and not isinstance(dim, (str, bytes)) else None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"dim: expected None, an int or a sequence of ints, got {dim!r}")
    return spikes.mean(dim=_checked_dims(spikes, dims, dim), keepdim=keepdim)


def _checked_dims(spikes: torch.Tensor, dims: tuple[Any, ...], given: Any) -> tuple[int, ...]:
    """``dims`` as Python ints, each in range for ``spikes`` and none named twice."""
    rank = spikes.dim()
    # torch reduces a 0-dim tensor over dim 0 or -1, as if it had one dimension
    span = max(rank, 1)
    result = tuple(int(d) for d in dims)
    for d in result:
        if not -span <= d < span:
            raise ValueError(
                f"dim: expected dimensions in [{-span}, {span - 1}] for spikes of rank {rank} "
                f"(shape {list(spikes.shape)}), got {given!r}"
            )
    normalised = [d % span for d in result]
    if len(set(normalised)) != len(normalised):
        raise ValueError(
            f"dim: expected distinct dimensions for spikes of rank {rank} (shape {list(spikes.shape)}), "
            f"got {given!r}, which names dimension {next(d for d in normalised if normalised.count(d) > 1)} twice"
        )
    return result


def firing_rates(monitor: BaseMonitor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """The firing rate of each monitored layer over everything it recorded.

    For each layer: the sum of all its recorded tensors divided by their total number of
    elements (records of different shapes, e.g. batches of different sizes, count by element).
    Use it with an :class:`OutputMonitor` on spiking neurons; with records that are already
    rates (``function_on_output=firing_rate``) it averages the rates, one per call.

    Args:
        monitor: a monitor whose records are floating or bool tensors.
        layers: the layer names to report (default: every monitored layer with records).

    Returns:
        ``name -> 0-dim tensor`` (float64, on the records' device), in monitoring order.

    Raises:
        TypeError: ``monitor`` is not a monitor, ``layers`` is a string, or a record is not a
            floating or bool tensor.
        KeyError: a name in ``layers`` is not monitored.
        ValueError: a requested layer has no records, or only empty ones.
    """
    if not isinstance(monitor, BaseMonitor):
        raise TypeError(f"monitor: expected an snn.monitor monitor, got {type(monitor).__name__}")
    if isinstance(layers, str):
        raise TypeError(f"layers: expected an iterable of layer names (e.g. [{layers!r}]), got the string {layers!r}")
    names = [n for n in monitor.monitored_layers if monitor.name_records_index[n]] if layers is None else list(layers)
    rates: dict[str, torch.Tensor] = {}
    for name in names:
        records = monitor[name]
        if not records:
            raise ValueError(f"layers: layer {name!r} has no records")
        total: torch.Tensor | None = None
        count = 0
        for index, record in enumerate(records):
            if not isinstance(record, torch.Tensor) or not (record.is_floating_point() or record.dtype == torch.bool):
                what = f"dtype {record.dtype}" if isinstance(record, torch.Tensor) else type(record).__name__
                raise TypeError(f"record {index} of layer {name!r}: expected a floating or bool tensor, got {what}")
            part = record.detach().sum(dtype=torch.float64)
            total = part if total is None else total + part.to(total.device)
            count += record.numel()
        assert total is not None
        if count == 0:
            raise ValueError(f"layers: the records of layer {name!r} hold no elements")
        rates[name] = total / count
    return rates
