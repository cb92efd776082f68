"""snn-cpp's kernels write every element of the reused, dirty buffers of the shared output
cache (:mod:`snn.backends.memory`, tested in snn-core); ``snn_cpp.memory`` keeps its names."""

from __future__ import annotations

import pytest

from snn.backends import memory
from snn.testing.buffers import check_kernel_on_reused_buffers
from snn_cpp import memory as cpp_memory
from snn_cpp.kernel import multi_step


def test_old_module_names_are_the_shared_objects():
    assert cpp_memory.empty_like is memory.empty_like and cpp_memory.empty_cache is memory.empty_cache
    assert cpp_memory.LARGE_BYTES == memory.LARGE_BYTES


@pytest.mark.usefixtures("cpp_ready")
def test_kernels_write_every_element_of_reused_buffers():
    check_kernel_on_reused_buffers(multi_step)
