"""``import snn.nir`` works on an install of snn-core alone (no NumPy, no nir): the NIR functions
say what to install when first used, instead of ``No module named 'numpy'`` at import."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_snn_nir_imports_without_numpy_and_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys

        class NoNumpy:
            def find_spec(self, name, path=None, target=None):
                if name == "numpy" or name.startswith("numpy."):
                    raise ModuleNotFoundError("No module named 'numpy'", name="numpy")
                return None

        sys.meta_path.insert(0, NoNumpy())
        for name in [n for n in sys.modules if n == "numpy" or n.startswith("numpy.")]:
            del sys.modules[name]
        import snn.nir
        layer = snn.nir.LINode(tau=2.0)  # the modules work
        try:
            snn.nir.export_to_nir
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith('snn.nir.export_to_nir needs NumPy and the nir package: pip install "snn-core[nir]"'), done.stdout
