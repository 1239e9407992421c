"""The package's shape: its modules import one another without cycles (every import counts, those inside
functions too), and `import vqspeech` offers the public face lazily."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "vqspeech"


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its file (static: from the source)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t not in (name, "vqspeech")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert "vqspeech.codec.api" in graph and graph["vqspeech.codec.api"]  # the walk sees the package
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_vqspeech_is_light_and_offers_the_public_face():
    code = "import sys, vqspeech; assert 'torch' not in sys.modules; print(vqspeech.load.__module__, vqspeech.decode.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["vqspeech.checkpoint", "decode_bytes"]


def test_the_public_functions_stay_functions_once_every_module_is_imported():
    """A submodule named like a public function would replace it on the package when first imported (Python binds
    vqspeech.X to the submodule vqspeech/X.py): vqspeech.convert must stay the function after the CLI, the demo's
    or the loader's imports have run."""
    import importlib
    import pkgutil

    import vqspeech

    names = {m.name for m in pkgutil.iter_modules(vqspeech.__path__)}
    assert not names & set(vqspeech.__all__), f"submodules shadow public functions: {sorted(names & set(vqspeech.__all__))}"
    importlib.import_module("vqspeech.conversion")
    assert callable(vqspeech.convert) and vqspeech.convert.__module__ == "vqspeech.conversion"


def test_a_shipped_model_is_named_by_its_stem():
    from vqspeech import checkpoint

    assert checkpoint.resolve(None) == checkpoint.default_model_path()
    assert "default" in checkpoint.shipped_models() and checkpoint.resolve("default") == checkpoint.default_model_path()
    assert checkpoint.resolve("no-such-model") == checkpoint.Path("no-such-model")  # a path, refused later by name
    assert checkpoint.resolve("default.pt") == checkpoint.Path("default.pt")  # a file name is a path, not a name


def test_info_needs_no_torch(tmp_path):
    """`vqspeech info` reads headers only: it must not pay torch's import (seconds) for that."""
    import subprocess
    import sys

    from tests.vqs_forge import example
    from vqspeech.codec.bitstream import pack

    (tmp_path / "a.vqs").write_bytes(pack(*example(512, 40, 32)))
    code = (f"import sys; from vqspeech import cli; rc = cli.main(['info', {str(tmp_path / 'a.vqs')!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vqs version 3" in done.stdout
