"""Build-time helpers of the snn documentation (a local Sphinx extension).

On ``builder-inited`` (before any page is read) this extension writes into ``docs/_generated/``
(gitignored):

- ``surrogates/<Name>.png`` for every class in :data:`snn.surrogate.SURROGATES`: the spiking
  forward (Heaviside step, or the class's own firing function), the primitive used with
  ``spiking=False`` (when the class has one) and the surrogate gradient ``g(x)``, drawn with
  matplotlib's Agg backend from the library's own math (``primitive`` and ``grad``);
- ``surrogate_classes.rst``: one section per surrogate class (``autoclass`` plus its plot), so
  that a class added to :mod:`snn.surrogate` appears in the API reference without editing the
  pages.

Files are only rewritten when their content changes, so incremental builds stay incremental.

It also adjusts how a few Google-style docstring patterns render, without touching the sources
(each handler says which pattern and why; ``sphinx-build -v`` logs every docstring it changes):
wrapped lists of parameter names, property sentences containing a colon, prose before a colon
in ``Returns:``, ``Args:`` in module docstrings, and private base classes.

Finally, :func:`check_code_width` warns about every line of a code block (``code-block``,
``doctest``, ``literalinclude``, ``::``) of the user-guide pages (``snn_code_width_pages``,
default :data:`CODE_WIDTH_PAGES`) that is wider than ``snn_code_width`` characters (default
:data:`CODE_WIDTH`): the code area shows about 84 characters of a monospace font (81 inside an
API entry), and a longer line wraps (``_static/snn.css``); ``-W`` makes the warning an error.
Examples in docstrings follow the code's own line length and are not checked.
"""

from __future__ import annotations

import fnmatch
import io
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging

__all__ = [
    "GENERATED",
    "surrogate_instance",
    "draw_surrogate",
    "join_wrapped_parameter_names",
    "keep_property_sentences",
    "restore_prose_returns",
    "module_field_lists",
    "public_bases",
    "CODE_WIDTH",
    "CODE_WIDTH_PAGES",
    "long_code_lines",
    "check_code_width",
    "setup",
]

logger = logging.getLogger(__name__)

#: Where generated files go (``docs/_generated``).
GENERATED = Path(__file__).resolve().parent.parent / "_generated"

#: Constructor arguments for surrogates without a default for every parameter.
_REQUIRED_ARGUMENTS: dict[str, tuple[Any, ...]] = {"MultiLevelSpikeCount": (3,)}

#: x range of each plot (default ``(-2, 2)``).
_RANGES: dict[str, tuple[float, float]] = {
    "MultiLevelSpikeCount": (-1.0, 4.0),
    "LogTailedReLU": (-2.0, 4.0),
    "FakeNumericalGradient": (-8.0, 8.0),  # g = min(1/|x|, 0.3) bends at |x| = 1/0.3
}


def surrogate_instance(name: str, spiking: bool = True) -> Any:
    """An instance of surrogate class ``name`` with its default parameters."""
    from snn.surrogate import SURROGATES

    cls = SURROGATES[name]
    return cls(*_REQUIRED_ARGUMENTS.get(name, ()), spiking=spiking)


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def draw_surrogate(name: str) -> bytes:
    """The PNG of surrogate ``name``: forward and primitive (left), ``g(x)`` (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    low, high = _RANGES.get(name, (-2.0, 2.0))
    x = torch.linspace(low, high, 801, dtype=torch.float64)
    spiking = surrogate_instance(name)
    params = ", ".join(f"{k}={v:g}" for k, v in spiking.params.items())
    gradient = spiking.grad(x)

    if name == "PoissonPass":
        forward = None  # random: no curve to draw
    elif name == "MultiLevelSpikeCount":
        forward = type(spiking).spike(x, **spiking.params)
    else:
        forward = (x >= 0).to(x.dtype)
    try:
        primitive = surrogate_instance(name, spiking=False)(x)
    except NotImplementedError:
        primitive = None

    figure, (left, right) = plt.subplots(1, 2, figsize=(8.0, 2.8), dpi=100, constrained_layout=True)
    if forward is not None:
        left.plot(x, forward, color="0.55", linestyle="--", linewidth=1.2, label="spiking forward")
    if primitive is not None:
        left.plot(x, primitive.detach(), color="tab:blue", linewidth=1.8, label="primitive f(x)")
    if forward is None:
        left.text(0.97, 0.05, "spiking forward: bernoulli(x), random", ha="right", va="bottom",
                  fontsize=8, transform=left.transAxes)
    left.set_title("forward (spiking=True) and primitive (spiking=False)", fontsize=9)
    left.set_xlabel("x")
    left.legend(fontsize=8, loc="upper left")
    right.plot(x, gradient, color="tab:red", linewidth=1.8)
    low_g, high_g = min(0.0, float(gradient.min())), max(0.0, float(gradient.max()))
    span = (high_g - low_g) or 1.0
    right.set_ylim(low_g - 0.06 * span, high_g + 0.1 * span)  # from 0, so constant gradients read right
    right.set_title("surrogate gradient g(x)", fontsize=9)
    right.set_xlabel("x")
    for axis in (left, right):
        axis.grid(True, linewidth=0.4, alpha=0.6)
        axis.axvline(0.0, color="0.3", linewidth=0.6)
    figure.suptitle(f"{name}({params})", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _surrogate_sections() -> str:
    from snn.surrogate import CLOSED_FORM_SURROGATES, SURROGATES

    lines = [".. This file is generated by docs/_ext/snn_docs.py at build time; do not edit.", ""]
    for name in SURROGATES:
        kernel_note = (
            "Kernel backends can implement it (closed-form derivative)."
            if name in CLOSED_FORM_SURROGATES
            else "Runs on the torch autograd path only (it does not fire with the Heaviside step)."
        )
        lines += [
            name,
            "-" * len(name),
            "",
            f".. autoclass:: snn.surrogate.{name}",
            "   :show-inheritance:",
            "",
            f"{kernel_note}",
            "",
            f".. image:: /_generated/surrogates/{name}.png",
            f"   :alt: {name}: forward, primitive and surrogate gradient",
            "   :width: 100%",
            "",
        ]
    return "\n".join(lines)


def generate(app: Any) -> None:
    """Write every generated file (connected to ``builder-inited``)."""
    from snn.surrogate import SURROGATES

    for name in SURROGATES:
        _write_if_changed(GENERATED / "surrogates" / f"{name}.png", draw_surrogate(name))
    _write_if_changed(GENERATED / "surrogate_classes.rst", _surrogate_sections().encode())


_NAME_LIST = re.compile(r"^(\s+)([A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)*),\s*$")


def join_wrapped_parameter_names(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Join an ``Args:`` entry whose list of parameter names wraps onto the next line.

    Google style documents several parameters at once as ``a, b, c: description``; when the
    list of names is too long for one line it is wrapped, e.g. ``IFNode``'s ``v_threshold,
    v_reset, ..., backend,`` / ``store_v_seq: as BaseNode``. Napoleon reads the first line as
    an entry of its own, and docutils then warns about the field list. This handler (run before
    napoleon) joins such a line, a comma-separated list of identifiers ending with a comma, with
    the next line when that one has the same indentation. Docstrings without the pattern are
    left as they are.
    """
    index = 0
    while index < len(lines) - 1:
        match = _NAME_LIST.match(lines[index])
        following = lines[index + 1]
        if match and following.startswith(match.group(1)) and following[len(match.group(1))].isalpha():
            lines[index : index + 2] = [f"{match.group(1)}{match.group(2)}, {following.strip()}"]
            logger.verbose("snn_docs: %s: joined a wrapped list of parameter names", name)
            continue
        index += 1


_SENTENCE_COLON = re.compile(r"^(\s*[^:`\[\]]*\s[^:`\[\]]*:)\s+(\S.*)$")


def keep_property_sentences(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Stop napoleon from reading a property's first sentence as ``type: description``.

    Napoleon takes the first line of a property or attribute docstring as ``type: description``
    when it contains a colon, so ``"The hashable description kernels receive: class name and
    float parameters."`` would be shown with the words before the colon as its type. snn
    annotates its properties instead, so when the part before the colon is a phrase (it contains
    a space and no brackets or backquotes) this handler (run before napoleon) breaks the line
    after the colon; the text is unchanged and still renders as one sentence.
    """
    if what not in {"property", "attribute", "data"} or not lines:
        return
    match = _SENTENCE_COLON.match(lines[0])
    if match:
        lines[0:1] = [match.group(1), match.group(2)]
        logger.verbose("snn_docs: %s: kept the first sentence from being read as a type", name)


_RTYPE = re.compile(r"^:rtype: (.*)$")


def restore_prose_returns(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Undo napoleon's ``type: description`` split of a ``Returns:`` section written as prose.

    Google style allows ``Returns: type: description``; napoleon therefore reads ``Returns:
    Spiking mode: the spikes ...`` as a return *type* "Spiking mode". snn's docstrings never put
    types there (they come from the annotations), so this handler (run after napoleon) joins a
    ``:rtype:`` that is a phrase (contains a space and no brackets) back in front of the
    ``:returns:`` text; autodoc then adds the annotated return type as usual. A literal in
    double backquotes (a shape such as ````[T, N, *out]````) counts as a phrase too.
    """
    for index, line in enumerate(lines):
        match = _RTYPE.match(line)
        phrase = match.group(1).strip() if match else ""
        if not match or " " not in phrase or ("[" in phrase and "``" not in phrase):
            continue
        for returns_index in range(index - 1, -1, -1):
            if lines[returns_index].startswith(":returns: "):
                text = lines[returns_index][len(":returns: "):]
                lines[returns_index] = f":returns: {phrase}: {text}"
                del lines[index]
                logger.verbose("snn_docs: %s: joined the prose return type back into the description", name)
                return
        return


_PARAM_FIELD = re.compile(r"^:param (\w+):(.*)$")


def module_field_lists(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Show ``Args:`` / ``Returns:`` of a *module* docstring as plain field lists.

    A module docstring may describe a calling convention with Google sections (``snn.kernels``
    describes the kernel signature that way). Napoleon turns them into ``:param x:`` fields,
    which Sphinx only renders as parameters inside a function's description; in a module they
    would show up as "param x". This handler (run after napoleon) renames them to ``:x:`` and
    ``:Returns:`` fields.
    """
    if what != "module":
        return
    for index, line in enumerate(lines):
        match = _PARAM_FIELD.match(line)
        if match:
            lines[index] = f":{match.group(1)}:{match.group(2)}"
        elif line.startswith(":returns:"):
            lines[index] = ":Returns:" + line[len(":returns:"):]


def public_bases(app: Any, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Show a private base class (``_SingleStepSequence``) as the public bases it derives from."""
    shown: list[type] = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        if base.__name__.startswith("_"):
            pending[0:0] = [b for b in base.__bases__ if b is not object]
        elif base not in shown:
            shown.append(base)
    bases[:] = shown


#: Widest code line, in characters, that the page shows whole (alabaster, ``page_width``
#: 1100px, code in a 0.9em monospace font inside a definition list).
CODE_WIDTH = 80

#: The pages (``fnmatch`` patterns of document names) whose code blocks are checked: the user
#: guide a newcomer reads first. Elsewhere (the API reference, tables of measured output copied
#: as printed) an over-long line wraps.
CODE_WIDTH_PAGES = ("index", "quickstart", "plugins/*")


def long_code_lines(text: str, width: int) -> list[tuple[int, int]]:
    """``(line number from 1, length)`` of each line of ``text`` longer than ``width``."""
    return [(number, len(line)) for number, line in enumerate(text.splitlines(), 1) if len(line) > width]


def check_code_width(app: Any, doctree: Any, docname: str) -> None:
    """Warn about code lines wider than ``snn_code_width`` (connected to ``doctree-resolved``)."""
    width = app.config.snn_code_width
    if not any(fnmatch.fnmatchcase(docname, pattern) for pattern in app.config.snn_code_width_pages):
        return
    for block in doctree.findall(nodes.literal_block):
        if ":docstring of " in (block.source or ""):
            continue  # examples in docstrings follow the code's line length (they wrap)
        for number, length in long_code_lines(block.astext(), width):
            logger.warning(
                "code line %d of this block has %d characters, more than the %d the page shows "
                "(snn_code_width): shorten it", number, length, width, location=block, type="snn", subtype="code_width",
            )


def setup(app: Any) -> dict[str, Any]:
    """Register the extension with Sphinx."""
    app.add_config_value("snn_code_width", CODE_WIDTH, "env", [int])
    app.add_config_value("snn_code_width_pages", CODE_WIDTH_PAGES, "env", [tuple, list])
    app.connect("builder-inited", generate)
    # priority < 500: before sphinx.ext.napoleon converts the docstring
    app.connect("autodoc-process-docstring", join_wrapped_parameter_names, priority=400)
    app.connect("autodoc-process-docstring", keep_property_sentences, priority=400)
    # priority > 500: after napoleon
    app.connect("autodoc-process-docstring", restore_prose_returns, priority=600)
    app.connect("autodoc-process-docstring", module_field_lists, priority=600)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("doctree-resolved", check_code_width)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
