"""The stable functional API of snn (compatible with SpikingJelly's ``activation_based.functional``).

Only the names in ``__all__`` are stable. They live in internal submodules (``net_config``,
``forward``, ``loss``, ``misc``, ``online_learning``, ``explicit_state``) whose paths are importable but may move.

- Network configuration: :func:`reset_net`, :func:`set_step_mode`, :func:`set_backend`,
  :func:`detach_net`; the pieces of :func:`reset_net` and its cache:
  :func:`collect_reset_modules`, :func:`reset_collected_modules`, :func:`invalidate_reset_cache`.
- Forward helpers: :func:`multi_step_forward`, :func:`t_last_multi_step_forward`,
  :func:`chunk_multi_step_forward`, :func:`seq_to_ann_forward`, :func:`t_last_seq_to_ann_forward`.
- Losses: :func:`kernel_dot_product`, :func:`spike_similar_loss`,
  :func:`temporal_efficient_training_cross_entropy`.
- Online learning (learners come from plugins): :func:`fptt_online_training_init_w_ra`,
  :func:`fptt_online_training`, :func:`ottt_online_training`.
- Miscellaneous: :func:`set_threshold_margin`, :func:`redundant_one_hot`,
  :func:`first_spike_index`, :func:`kaiming_normal_conv_linear_weight`, :func:`delay`.
- Explicit state: :func:`to_functional_forward` (for ``torch.func`` transforms).
"""

from __future__ import annotations

from snn.functional.explicit_state import to_functional_forward
from snn.functional.forward import (
    chunk_multi_step_forward,
    multi_step_forward,
    seq_to_ann_forward,
    t_last_multi_step_forward,
    t_last_seq_to_ann_forward,
)
from snn.functional.loss import (
    kernel_dot_product,
    spike_similar_loss,
    temporal_efficient_training_cross_entropy,
)
from snn.functional.misc import (
    delay,
    first_spike_index,
    kaiming_normal_conv_linear_weight,
    redundant_one_hot,
    set_threshold_margin,
)
from snn.functional.net_config import (
    collect_reset_modules,
    detach_net,
    invalidate_reset_cache,
    reset_collected_modules,
    reset_net,
    set_backend,
    set_step_mode,
)
from snn.functional.online_learning import (
    fptt_online_training,
    fptt_online_training_init_w_ra,
    ottt_online_training,
)

__all__ = [
    "reset_net",
    "set_step_mode",
    "set_backend",
    "detach_net",
    "collect_reset_modules",
    "reset_collected_modules",
    "invalidate_reset_cache",
    "multi_step_forward",
    "t_last_multi_step_forward",
    "chunk_multi_step_forward",
    "seq_to_ann_forward",
    "t_last_seq_to_ann_forward",
    "kernel_dot_product",
    "spike_similar_loss",
    "temporal_efficient_training_cross_entropy",
    "fptt_online_training_init_w_ra",
    "fptt_online_training",
    "ottt_online_training",
    "set_threshold_margin",
    "redundant_one_hot",
    "first_spike_index",
    "kaiming_normal_conv_linear_weight",
    "delay",
    "to_functional_forward",
]
