"""snn's backend conformance suite, run on the CPU against the exact cupy kernel sources.

:class:`snn_cupy.host.HostPlugin` registers backend ``"cupy_host"``: the kernels the ``"cupy"``
backend compiles with NVRTC, compiled instead by the host C++ compiler and driven by the same
Python code (:func:`snn_cupy.kernels.run_multi_step`: flattening, layouts, the autograd function,
the parameter-gradient reduction). The suite compares it with a float64 autograd loop of each
model description over every registered model the backend serves x resets x ``detach_reset`` x
the model's examples, every claimed surrogate, both dtypes, odd sizes, ``T = 1``,
non-contiguous inputs and partial gradients. What this cannot check (real CUDA arithmetic,
``cvt`` instructions, CuPy launches and streams) is left to ``test_gpu.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snn.testing import BackendConformance
from snn_cupy.host import HostPlugin, find_compiler, host_executor
from snn_cupy.sources import backward_kernel_source, forward_kernel_source

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host emulation")


class TestHostConformance(BackendConformance):
    backend = "cupy_host"
    plugin = HostPlugin()
    plugin_name = "cupy_host"

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _compile_everything_once(cls) -> Iterator[None]:
        """Compile every source the suite needs in one parallel build (instead of one per case)."""
        suite = cls()
        sources = []
        with suite.registry() as registry:
            for group in ("dynamics", "surrogates", "dtypes", "modes", "layouts"):
                for case in suite.conformance_cases(group):
                    if case.skip is not None:
                        continue
                    config = suite.config_for(case, registry)
                    sources += [
                        forward_kernel_source(config, case.dtype, True),
                        forward_kernel_source(config, case.dtype, False),
                        backward_kernel_source(config, case.dtype),
                    ]
        if sources:
            host_executor().prepare({s.name: s for s in sources}.values())
        yield
