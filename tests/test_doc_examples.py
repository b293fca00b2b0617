"""The examples in README.md and docs/*.md, checked against the package as it is.

- Every ``heteroagg`` line of a shell block, and every inline ``heteroagg``
  command of the text, names a command that exists and only options that
  command declares.
- Every Python block imports names that exist, calls heteroagg's functions,
  classes and methods with arguments their signatures accept, and reads no name
  that its document has not defined before (or says the reader brings).
- The blocks that run in seconds run verbatim, in a fresh folder, and must not
  warn.
- Every dotted ``heteroagg.…`` name in inline code exists.
- Every TOML block loads as a run (``[train]``) or dataset config.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import shlex
import typing
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Names a document's examples take from the reader, as its text says.
BROUGHT = {
    "deploy.md": {"images"},  # "(H, W) or (B, H, W)" arrays of the user's own
    "learning.md": {"images"},
}
#: How many leading Python blocks of a document run verbatim within seconds.
RUN_VERBATIM = {"README.md": 3, "data.md": 1, "render.md": 1}


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The contents of the blocks fenced as ``language`` in ``path``, in order."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```", re.M | re.S)
    return pattern.findall(path.read_text(encoding="utf-8"))


def command_lines() -> list:
    """``heteroagg`` lines of the shell blocks and the inline code of the text."""
    params = []
    for path in DOCUMENTS:
        lines = [
            line.split("#", 1)[0].strip()
            for block in fenced_blocks(path, "bash")
            for line in block.splitlines()
        ]
        lines += re.findall(r"`(heteroagg [^`]*)`", path.read_text(encoding="utf-8"))
        for line in dict.fromkeys(lines):
            if line.startswith("heteroagg "):
                params.append(pytest.param(line, id=f"{path.name}: {line[:60]}"))
    return params


def python_documents() -> list:
    return [pytest.param(path, id=path.name) for path in DOCUMENTS if fenced_blocks(path, "python")]


def undeclared_options(line: str) -> list[str]:
    """The options of a ``heteroagg`` command line that its command does not declare.

    Optional parts in brackets count; a line naming no command raises ``LookupError``.
    """
    from typer.main import get_command

    from heteroagg.cli import app

    words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    command = get_command(app)
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if hasattr(command, "commands"):
        raise LookupError(f"{line!r}: no such command")
    declared = {"--help"} | {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    return sorted({word.split("=", 1)[0] for word in words if word.startswith("-")} - declared)


@pytest.mark.parametrize("line", command_lines())
def test_command_lines_name_real_commands_and_options(line):
    assert undeclared_options(line) == []


def test_drifted_command_lines_are_caught():
    assert undeclared_options("heteroagg train --data d --colour=red [--max-minutes 5]") == [
        "--colour"
    ]
    assert undeclared_options("heteroagg validate abtem --help") == []
    assert undeclared_options("heteroagg sample -o a.npz --plot a.png") == []
    for line in ("heteroagg fly --out x", "heteroagg validate"):
        with pytest.raises(LookupError, match="no such command"):
            undeclared_options(line)


def resolve(name: str) -> object:
    """The object a dotted name refers to, importing its longest module prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
            break
        except ModuleNotFoundError:
            if end == 1:
                raise
    for attribute in parts[end:]:
        obj = getattr(obj, attribute)
    return obj


class ExampleChecker:
    """Follows a document's Python blocks statement by statement.

    It knows what a name refers to where that can be told without running the
    code: imported modules, functions and classes, instances made by calling a
    class, and what a function, property or dataclass field is annotated to
    give.  Every call it can resolve is bound against the signature.
    """

    def __init__(self, brought: set[str] = frozenset()):
        self.defined = set(dir(builtins)) | set(brought)
        self.objects: dict[str, object] = {}
        self.instances: dict[str, type] = {}
        self.problems: list[str] = []
        self.calls_bound = 0
        self._calls: dict[ast.Call, object] = {}

    def check(self, source: str, where: str) -> None:
        for statement in ast.parse(source).body:
            self._statement(statement, where)

    def _statement(self, statement: ast.stmt, where: str) -> None:
        line = f"{where}, line {statement.lineno}"
        if isinstance(statement, ast.Import | ast.ImportFrom):
            self._import(statement, line)
            return
        stored = {
            n.id
            for n in ast.walk(statement)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
        }
        read = {
            n.id
            for n in ast.walk(statement)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        }
        for name in sorted(read - self.defined - stored):
            self.problems.append(f"{line}: {name!r} is not defined")
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                self._value(node, line)
        self.defined |= stored
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                self._remember(target.id, self._value(statement.value, line))

    def _import(self, statement: ast.Import | ast.ImportFrom, line: str) -> None:
        for alias in statement.names:
            bound = alias.asname or alias.name.split(".")[0]
            if isinstance(statement, ast.ImportFrom):
                imported = value = f"{statement.module}.{alias.name}"
            else:  # "import a.b" imports a.b and binds a
                imported, value = alias.name, alias.name if alias.asname else bound
            try:
                resolve(imported)
                self._remember(bound, ("object", resolve(value)))
            except (ImportError, AttributeError) as error:
                self.problems.append(f"{line}: {error}")
            self.defined.add(bound)

    def _remember(self, name: str, value) -> None:
        self.objects.pop(name, None)
        self.instances.pop(name, None)
        if value is not None and value[0] == "object":
            self.objects[name] = value[1]
        elif value is not None and value[0] == "instance":
            self.instances[name] = value[1]

    def _value(self, node: ast.expr, line: str):
        """("object", obj), ("instance", cls), ("method", function) or None."""
        if isinstance(node, ast.Name):
            if node.id in self.objects:
                return ("object", self.objects[node.id])
            if node.id in self.instances:
                return ("instance", self.instances[node.id])
            return None
        if isinstance(node, ast.Attribute):
            return self._attribute(self._value(node.value, line), node.attr, line)
        if isinstance(node, ast.Call):
            if node not in self._calls:  # each call is met again in its statement's walk
                self._calls[node] = self._call(node, line)
            return self._calls[node]
        return None

    def _attribute(self, base, name: str, line: str):
        if base is None:
            return None
        if base[0] == "object":
            if not hasattr(base[1], name):
                self.problems.append(f"{line}: {base[1]!r} has no attribute {name!r}")
                return None
            return ("object", getattr(base[1], name))
        cls = base[1]
        if base[0] != "instance" or not is_ours(cls):
            return None
        member = inspect.getattr_static(cls, name, None)
        if isinstance(member, property):
            return instance_of(annotated_return(member.fget))
        if inspect.isfunction(member):
            return ("method", member)
        return instance_of(annotations(cls).get(name))

    def _call(self, node: ast.Call, line: str):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            return None
        callee = self._value(node.func, line)
        if callee is None or callee[0] == "instance":
            return None
        args = [object()] * len(node.args)
        kwargs = {k.arg: object() for k in node.keywords}
        if callee[0] == "method":
            function, args = callee[1], [object(), *args]
        else:
            function = callee[1]
            if not callable(function) or not is_ours(function):
                return None
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            self.problems.append(f"{line}: no signature for {function!r}")
            return None
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            self.problems.append(f"{line}: {ast.unparse(node)}: {error}")
        self.calls_bound += 1
        if inspect.isclass(function):
            return ("instance", function)
        return instance_of(annotated_return(function))


def is_ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "heteroagg"


def annotations(obj: object) -> dict:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # hints naming what is imported only for type checkers
        return {}


def annotated_return(function) -> object:
    return annotations(function).get("return")


def instance_of(hint: object):
    return ("instance", hint) if inspect.isclass(hint) else None


def check_document(path: Path) -> ExampleChecker:
    checker = ExampleChecker(BROUGHT.get(path.name, set()))
    for index, block in enumerate(fenced_blocks(path, "python")):
        checker.check(block, f"{path.name}, Python example {index + 1}")
    return checker


@pytest.mark.parametrize("path", python_documents())
def test_python_examples_match_the_api(path):
    checker = check_document(path)
    assert not checker.problems, "\n".join(checker.problems)
    assert checker.calls_bound > 0


def test_the_checker_finds_what_drifted():
    """Each kind of drift the examples could suffer is reported."""
    checker = ExampleChecker()
    checker.check(
        "import heteroagg\n"
        "from heteroagg.stem import render_haadf, HaadfRenderer\n"
        "from heteroagg.stem import render_haadf_fast\n"
        "agg = heteroagg.sample_aggregate(heteroagg.ModelParams(n_particles=9), 1)\n"
        "heteroagg.sample_aggregate(heteroagg.ModelParams(), seed=1, colour=2)\n"
        "render_haadf(agg, pixel_size=1.0)\n"
        "render_haadf(aggregates, pixel_size=1.0, shape=64)\n"
        "renderer = HaadfRenderer(pixel_size=1.0, shape=64)\n"
        "renderer.batch([agg])\n"
        "renderer.batch([agg], seeds=[0])\n"
        "heteroagg.default_config().params.sample(root_seed=1, index=0, extra=3)\n"
        "heteroagg.sample_aggregat(None, 1)\n",
        "drifted",
    )
    expected = [
        "line 3: module 'heteroagg.stem' has no attribute 'render_haadf_fast'",
        "line 5: heteroagg.sample_aggregate(heteroagg.ModelParams(), seed=1, colour=2)",
        "line 6: render_haadf(agg, pixel_size=1.0): missing a required argument: 'shape'",
        "line 7: 'aggregates' is not defined",
        "line 9: renderer.batch([agg]): missing a required argument: 'seeds'",
        "line 11: heteroagg.default_config().params.sample(root_seed=1, index=0, extra=3)",
        "line 12: <module 'heteroagg'",
    ]
    assert len(checker.problems) == len(expected), checker.problems
    for problem, start in zip(checker.problems, expected, strict=True):
        assert problem.startswith(f"drifted, {start}"), problem
    assert checker.calls_bound == 11


@pytest.mark.parametrize("name", sorted(RUN_VERBATIM))
def test_quick_examples_run_verbatim_without_warnings(name, tmp_path, monkeypatch):
    path = next(p for p in DOCUMENTS if p.name == name)
    blocks = fenced_blocks(path, "python")[: RUN_VERBATIM[name]]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for index, block in enumerate(blocks):
            exec(compile(block, f"{name}, Python example {index + 1}", "exec"), namespace)


#: Modules the docs name that a build has only where CMake found a CUDA compiler.
BUILT_WITH_CUDA = {"heteroagg._cuda"}


def dotted_names() -> list:
    names = {}
    for path in DOCUMENTS:
        for name in re.findall(r"`(heteroagg(?:\.\w+)+)", path.read_text(encoding="utf-8")):
            names.setdefault(name, path.name)
    return [pytest.param(name, id=f"{doc}: {name}") for name, doc in names.items()]


@pytest.mark.parametrize("name", dotted_names())
def test_dotted_names_in_the_text_exist(name):
    if name in BUILT_WITH_CUDA:
        pytest.importorskip(name)
    resolve(name)


def test_misspelt_dotted_names_are_caught():
    assert resolve("heteroagg.twins.head_weights").__name__ == "head_weights"
    with pytest.raises(AttributeError):
        resolve("heteroagg.twins.head_weight")
    with pytest.raises(AttributeError):
        resolve("heteroagg.stem.calibrated")


def toml_examples() -> list:
    return [
        pytest.param(block, id=f"{path.name}: example {index + 1}")
        for path in DOCUMENTS
        for index, block in enumerate(fenced_blocks(path, "toml"))
    ]


@pytest.mark.parametrize("block", toml_examples())
def test_toml_examples_are_valid_configs(block, tmp_path):
    """Run configs a reader copies load as they stand: no unknown or invalid setting."""
    from heteroagg.data import DatasetConfig
    from heteroagg.learn import TrainConfig

    path = tmp_path / "config.toml"
    path.write_text(block, encoding="utf-8")
    if re.match(r"\s*\[train\]", block):
        TrainConfig.from_toml(path)
    else:
        DatasetConfig.from_toml(path)
