"""Hook specifications of snn: what a plugin can add.

snn is extended through `pluggy <https://pluggy.readthedocs.io>`_. A plugin is a module (or
object) with functions decorated by :data:`snn.hookimpl`; a separate distribution makes it
known through an entry point in the group ``snn``::

    [project.entry-points.snn]
    myname = "snn_myname.plugin"

Each hook receives a *registrar*: a callable that the plugin calls once per thing it provides,
as ``register(name, implementation, **options)`` with the keyword options listed per hook below
(another keyword is a ``TypeError``, and a type checker flags it); its class in
:mod:`snn.registry` is the annotation of the hook's ``register`` argument below. The core owns the data; the plugin never
returns anything. Hooks are called when the plugin manager is first built (lazily, on first
use; nothing happens at ``import snn``): once per plugin, through pluggy's hook relay (so
pluggy's tracing and monitoring see each call), with a registrar bound to that plugin. A hook
that raises, or a name that is already taken, is recorded as a failure of that plugin and shown
by ``snn doctor``; the other plugins keep working.

An implementation may accept fewer arguments than its specification (pluggy's opt-in
arguments), so new arguments can be added to a spec without breaking plugins. Annotate the
registrar with its class; mypy with the :mod:`snn.mypy_plugin` plugin then checks each
implementation against its spec here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from snn.registry import (
        BackendRegistrar,
        LearnerRegistrar,
        LossRegistrar,
        NeuronModelRegistrar,
        StrategyRegistrar,
    )

__all__ = [
    "PROJECT_NAME",
    "hookspec",
    "snn_register_neuron_models",
    "snn_register_backends",
    "snn_register_forward_strategies",
    "snn_register_losses",
    "snn_register_online_learners",
]

#: The pluggy project name; also the entry-point group.
PROJECT_NAME = "snn"

#: Marker for hook specifications (used by this module only).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# Neuron models
# ---------------------------------------------------------------------------------------------


@hookspec
def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
    """Register neuron models: descriptions that kernel backends run.

    Call ``register(model, *, description=None, node=None)`` once per model:

    :param register: the neuron-model registrar. Its arguments:

        - ``model`` (:class:`snn.models.NeuronModel`): the description (states, hyper-parameters,
          learnable parameters, charge, firing state and threshold, reset), written with
          :mod:`snn.expr`. Its ``name`` is the registry key (e.g. ``"izhikevich"``).
        - ``description`` (str, optional): one line for ``snn doctor`` (default: the model's).
        - ``node`` (class, optional): the module class that runs the model, for ``snn bench``
          and :func:`snn.neuron.node_class` (default: the :class:`snn.neuron.BaseNode` subclass
          whose ``model`` it is); a class whose ``model`` is another raises :class:`TypeError`.

    :returns: nothing.

    Backends that generate their kernels (torch, Triton, CuPy, cpp) serve every registered model
    whose expressions use only the operations they render; nothing else is needed. Give the model
    a module class too (subclass :class:`snn.neuron.BaseNode` with ``model = ...``) so users can
    put it in a network. Built in: ``if``, ``lif``, ``plif``, ``qif``, ``eif``, ``izhikevich``,
    ``klif`` and ``cubalif``.

    Use in a plugin::

        @snn.hookimpl
        def snn_register_neuron_models(register: NeuronModelRegistrar) -> None:
            register(MY_MODEL)
    """


# ---------------------------------------------------------------------------------------------
# Neuron kernels
# ---------------------------------------------------------------------------------------------


@hookspec
def snn_register_backends(register: BackendRegistrar) -> None:
    """Register neuron-kernel backends.

    Call ``register(name, kernels, *, devices, dtypes, probe, ...)`` once per backend:

    :param register: the backend registrar. Its arguments:

        - ``name`` (str): the backend name users pass to ``set_backend`` (e.g. ``"triton"``).
        - ``kernels`` (Mapping[str, str]): one kernel per *kernel mode*, ``"multi_step"`` (runs
          neurons in step mode ``'m'``) and optionally ``"single_step"`` (step mode ``'s'``),
          each given as a ``"module:attribute"`` string imported on first use.
          The callable follows the neuron-kernel contract of :mod:`snn.kernels` for every model
          it serves.
        - ``devices`` (Iterable[str]): device types served, e.g. ``("cuda",)`` (with
          ``emulated_devices``, at least one device type in all).
        - ``dtypes`` (Iterable[torch.dtype]): storage dtypes served, floating, at least one.
        - ``probe`` (Callable[[], str | None]): returns ``None`` when the backend can run
          here, else a human-readable reason (e.g. ``"no CUDA device"``). Called lazily, once.
        - exactly one of:

          - ``operations`` (Iterable[str]): for kernels generated from the models' expressions,
            the :mod:`snn.expr` operations the backend renders. It then serves every registered
            model, and every surrogate (built-in or a third party's), whose kernel plan
            (:func:`snn.models.kernel_plan`) uses only these.
          - ``models`` (Iterable[str]): for hand-written kernels, the names of the models served:
            registered models (every plugin's models are registered before any backend). The
            backend serves the model objects registered under those names, and a configuration
            only with a surrogate it names: a neuron whose model merely shares a name (one that
            lost a name clash, or was never registered) is refused, not run with another
            model's kernel.

        - ``surrogates`` (Iterable[str], optional for generating backends): class names of
          :mod:`snn.surrogate` (built-in classes only) whose derivative the kernels implement. Claim only what the
          conformance suite can check.
        - ``emulated_devices`` (Iterable[str], optional): devices served only through an
          interpreter or emulation (kept for tests; ``"auto"`` never picks them).
        - ``auto_priority`` (int, optional): larger wins when ``backend="auto"`` chooses
          among backends that serve the input. The torch backend has priority 0.
        - ``literal_constants`` (bool, optional, default ``True``): for generating backends,
          whether the kernels hold hyper-parameters and surrogate parameters as float32 literals
          when the inputs are not float64; a finite value beyond float32's range (``1e39``) is
          then refused with such inputs. ``False`` where the kernels receive them as Python
          numbers at run time (the torch backend).
        - ``description`` (str, optional): one line for ``snn doctor``.

    :returns: nothing; the registrar keeps the data.

    Use in a plugin::

        @snn.hookimpl
        def snn_register_backends(register: BackendRegistrar) -> None:
            register(
                "mykernels",
                {"multi_step": "snn_mykernels.lif:lif_multi_step"},
                models=("lif",),
                devices=("cuda",),
                dtypes=(torch.float32,),
                surrogates=("Sigmoid", "ATan"),
                probe=probe,
            )
    """


# ---------------------------------------------------------------------------------------------
# Forward strategies
# ---------------------------------------------------------------------------------------------


@hookspec
def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
    """Register named ways of running a module over a sequence.

    Call ``register(name, strategy, *, description=None, module="single_step")`` once per
    strategy:

    :param register: the strategy registrar. Its arguments:

        - ``name`` (str): e.g. ``"checkpointed"``.
        - ``strategy`` (Callable[..., Tensor]): called as
          ``strategy(module, x_seq, **options)`` with ``x_seq`` of shape ``[T, N, *]`` (time
          first) and returns the stacked outputs ``[T, N, *]``.
        - ``description`` (str, optional): one line for ``snn doctor``.
        - ``module`` (str, optional): what ``module`` must be: ``"single_step"`` (default; run
          one step at a time, its state carried), ``"multi_step"`` (given whole sequences) or
          ``"stateless"`` (all steps at once, no state between them).
          :class:`snn.layer.MultiStepContainer` refuses a ``"multi_step"`` strategy, and a
          ``"stateless"`` one while a child holds state.

    :returns: nothing.

    Built in: ``loop``, ``t_last``, ``chunked``, ``seq_to_ann``, ``t_last_seq_to_ann`` and
    ``checkpointed``. :class:`snn.layer.MultiStepContainer` takes ``strategy=`` by name.

    Use in a plugin::

        @snn.hookimpl
        def snn_register_forward_strategies(register: StrategyRegistrar) -> None:
            register("burn_in", burn_in_strategy, description="no gradients for the first steps")
    """


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


@hookspec
def snn_register_losses(register: LossRegistrar) -> None:
    """Register named losses.

    Call ``register(name, loss, *, signature=None, description=None)`` once per loss:

    :param register: the loss registrar. Its arguments:

        - ``name`` (str): e.g. ``"tet"``.
        - ``loss`` (Callable[..., Tensor]): the loss function.
        - ``signature`` (str, optional): ``"sequence_classification"`` for losses called as
          ``loss(y_seq, target)`` with ``y_seq`` of shape ``[T, N, C]`` and integer class
          indices ``target`` of shape ``[N]`` (what ``snn train --loss`` accepts); anything
          else for losses with other arguments.
        - ``description`` (str, optional): one line for ``snn doctor``.

    :returns: nothing.

    Built in: ``tet``, ``spike_similar``, ``ce_rate`` and ``mse_count``.

    Use in a plugin::

        @snn.hookimpl
        def snn_register_losses(register: LossRegistrar) -> None:
            register("hinge_rate", hinge_rate, signature="sequence_classification")
    """


# ---------------------------------------------------------------------------------------------
# Online learners
# ---------------------------------------------------------------------------------------------


@hookspec
def snn_register_online_learners(register: LearnerRegistrar) -> None:
    """Register online learning rules.

    Call ``register(name, learner, *, description=None, data_parallel=False)`` once per learner:

    :param register: the learner registrar. Its arguments:

        - ``name`` (str): e.g. ``"ottt"``.
        - ``learner`` (:class:`snn.learning.OnlineLearner`): an object implementing the
          learner interface; :mod:`snn.functional` dispatches ``ottt_online_training``,
          ``fptt_online_training`` and ``fptt_online_training_init_w_ra`` to the learners
          named ``ottt`` and ``fptt``.
        - ``description`` (str, optional): one line for ``snn doctor``.
        - ``data_parallel`` (bool, optional, default ``False``): ``True`` when the learner may
          train one replica per process of a data-parallel group (``snn train --nproc``):
          every call of the network it trains is followed by the backward of a loss, so that
          gradient synchronisation happens once per call (see :doc:`/distributed`).

    :returns: nothing.

    The ``snn-online`` distribution provides ``ottt``, ``sltt`` and ``fptt``.

    Use in a plugin::

        @snn.hookimpl
        def snn_register_online_learners(register: LearnerRegistrar) -> None:
            register("tbptt", TruncatedBPTT(k=2), description="truncated BPTT")
    """
