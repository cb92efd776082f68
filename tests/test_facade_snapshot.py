"""The stable facade: ``snn.functional.__all__`` and every signature, pinned.

A change here is an API change: update the snapshot only on purpose (and note it in the
changelog). Parameter names, kinds and defaults are pinned; annotations are documentation and
are not.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import snn.functional

SNAPSHOT = """\
reset_net(net)
set_step_mode(net, step_mode)
set_backend(net, backend, instance=None)
detach_net(net)
collect_reset_modules(net)
reset_collected_modules(modules)
invalidate_reset_cache(net)
multi_step_forward(x_seq, single_step_module)
t_last_multi_step_forward(x_seq, single_step_module)
chunk_multi_step_forward(split_size, x_seq, multi_step_module)
seq_to_ann_forward(x_seq, stateless_module)
t_last_seq_to_ann_forward(x_seq, stateless_module)
kernel_dot_product(x, y, kernel='linear', *args)
spike_similar_loss(spikes, labels, kernel_type='linear', loss_type='mse', *args)
temporal_efficient_training_cross_entropy(x_seq, target)
fptt_online_training_init_w_ra(optimizer)
fptt_online_training(model, optimizer, x_seq, target_seq, f_loss_t, alpha, w_ra)
ottt_online_training(model, optimizer, x_seq, target_seq, f_loss_t, online)
set_threshold_margin(output_layer, label_one_hot, eval_threshold=1.0, threshold0=0.9, threshold1=1.1)
redundant_one_hot(labels, num_classes, n)
first_spike_index(spikes)
kaiming_normal_conv_linear_weight(net)
delay(x_seq, delay_steps)
to_functional_forward(module, fn=None)
"""

#: Where each function lives (internal paths the reference's tests import).
SUBMODULES = {
    "net_config": [
        "reset_net",
        "set_step_mode",
        "set_backend",
        "detach_net",
        "collect_reset_modules",
        "reset_collected_modules",
        "invalidate_reset_cache",
    ],
    "forward": [
        "multi_step_forward",
        "t_last_multi_step_forward",
        "chunk_multi_step_forward",
        "seq_to_ann_forward",
        "t_last_seq_to_ann_forward",
    ],
    "loss": ["kernel_dot_product", "spike_similar_loss", "temporal_efficient_training_cross_entropy"],
    "online_learning": ["fptt_online_training_init_w_ra", "fptt_online_training", "ottt_online_training"],
    "misc": ["set_threshold_margin", "redundant_one_hot", "first_spike_index", "kaiming_normal_conv_linear_weight", "delay"],
    "explicit_state": ["to_functional_forward"],
}


def _plain_signature(function: object) -> str:
    """The signature without annotations: names, kinds and defaults."""
    signature = inspect.signature(function)  # type: ignore[arg-type]  # a callable typed object
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


def test_all_is_exactly_the_twenty_four_functions_in_order() -> None:
    expected = [line.split("(", 1)[0] for line in SNAPSHOT.splitlines()]
    assert snn.functional.__all__ == expected
    assert len(expected) == 24


def test_signatures_match_snapshot() -> None:
    current = "".join(f"{name}{_plain_signature(getattr(snn.functional, name))}\n" for name in snn.functional.__all__)
    assert current == SNAPSHOT


def test_every_function_is_documented() -> None:
    for name in snn.functional.__all__:
        doc = inspect.getdoc(getattr(snn.functional, name)) or ""
        assert doc, name
        assert "Args:" in doc or not inspect.signature(getattr(snn.functional, name)).parameters, name


def test_internal_submodules_hold_the_functions() -> None:
    for submodule, names in SUBMODULES.items():
        module = importlib.import_module(f"snn.functional.{submodule}")
        for name in names:
            assert getattr(module, name) is getattr(snn.functional, name)
            assert name in module.__all__
    net_config = importlib.import_module("snn.functional.net_config")
    assert sorted(net_config.__all__) == [
        "collect_reset_modules",
        "detach_net",
        "invalidate_reset_cache",
        "reset_collected_modules",
        "reset_net",
        "set_backend",
        "set_step_mode",
    ]
    assert type(net_config._RESET_MODULE_CACHE).__name__ == "WeakKeyDictionary"


def test_parameter_names_match_the_reference_library() -> None:
    """Where the reference library (spikingjelly 2.0.0) has the function, names and defaults agree."""
    reference = pytest.importorskip("spikingjelly.activation_based.functional")
    online = importlib.import_module("spikingjelly.activation_based.learning.online_learning")
    compared = 0
    base = importlib.import_module("spikingjelly.activation_based.base")
    for name in snn.functional.__all__:
        theirs = getattr(reference, name, None) or getattr(online, name, None) or getattr(base, name, None)
        if theirs is None:  # set_backend was removed from 2.0.0
            continue
        assert _plain_signature(getattr(snn.functional, name)) == _plain_signature(theirs), name
        compared += 1
    assert compared >= 23
