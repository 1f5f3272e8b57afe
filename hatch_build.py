"""Hatchling build hook: compiles the package's C modules (`pipeline/**/_*.c`).

Each `<name>.c` becomes `<name><EXT_SUFFIX>`, built with this interpreter's own compiler and
headers (`sysconfig`): beside its source for an editable install (`pip install -e .`, dev.py),
which imports from the source tree; under `build/` for a wheel, which carries it at that
place in the package (the in-tree copies are ignored by git, hence by the wheel, and by
Docker's context). Each module has a pure-Python equivalent the package uses when the module
is missing: where no C compiler or Python headers are (a slim image without build tools),
the build prints why (pip shows it with `-v`) and the wheel is pure Python; the daemon then
logs at start what runs instead and what to install (`pages_cut_with_numpy`, and
`lines_rendered_in_python` where JSON Lines or CSV is written). `CI=true` makes a failed
compile fail the build, so the test suite always runs the C code there
(tests/unit/outputs/test_native_lines.py checks it is loaded).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent


def _compiler() -> list[str]:
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(compiler)


def module_name(source: Path) -> str:
    """The file name of the extension module built from `source`."""
    return source.stem + sysconfig.get_config_var("EXT_SUFFIX")


def compile_module(source: Path, target: Path) -> None:
    """`source` compiled into the extension module `target`; raises on a failed compile."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # macOS links an extension as a bundle whose Python symbols the interpreter provides.
    link = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
    command = [
        *_compiler(),
        *link,
        "-fPIC",
        "-O2",
        "-Wall",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Builds every C module before the wheel (or the editable wheel) is assembled."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        sources = sorted((ROOT / "pipeline").rglob("_*.c"))
        compiler = shutil.which(_compiler()[0])
        built: dict[Path, Path] = {}
        for source in sources:
            place = source.parent / module_name(source)
            target = place if version == "editable" else ROOT / "build" / "native" / place.name
            try:
                if compiler is None:
                    raise FileNotFoundError(f"no C compiler ({_compiler()[0]}) on PATH")
                compile_module(source, target)
                built[place] = target
            except (OSError, subprocess.CalledProcessError) as exc:
                if os.environ.get("CI") == "true":
                    raise
                print(
                    f"onc-pipeline: {source.name} not compiled ({exc}); its pure-Python"
                    " equivalent is used (slower). Install a C compiler and the Python"
                    " headers (Debian: gcc python3-dev) to build it.",
                    file=sys.stderr,
                )
        if built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":  # an editable install imports them from the tree
                for place, target in built.items():
                    build_data["force_include"][str(target)] = str(place.relative_to(ROOT))
