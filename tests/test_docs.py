"""Every ``leakaudit`` command shown in the README and docs/*.md runs, the Python examples
of the getting-started and Python API pages run, and every relative link in the README
and docs/*.md points to a file that exists.

Commands are the lines of fenced ```bash blocks that start with ``leakaudit `` (after an
optional ``$ ``; ``\\``-continued lines are joined). The commands of one block run in
order, through Typer's ``CliRunner``, in a fresh directory holding the inputs docs may
name (see :func:`workspace`): a block may ``leakaudit init`` a config and scan with it.
Shell redirections (``> file``, ``2> file``, ``2>&1``) are honoured; whatever follows a
``|``, ``&&``, ``||`` or ``;`` is not run (it is not leakaudit).

A command is expected to exit 0 unless its line's comment says otherwise, e.g.
``leakaudit scan --config leakaudit.yaml --fail-on 'i2f<10'   # exits 1: gate fails``.

The ```python blocks of :data:`PYTHON_DOCS` run in order in one namespace, in the same
kind of directory.

Speed: the commands and examples run as written, but the test caps the engine's work,
because they scan with the shipped defaults (80 Lanczos steps, 8 probes; the demo scans
200 samples), which takes minutes on a 2-core CI machine. The caps — ``max_iter`` 12
and ``n_probes`` 2 for every ``ScoreOptions``, the demo at one sample per class, 2
attack iterations per budget — change the numbers, not what is parsed, loaded, written
or gated; the engine's numbers are tested against dense ground truths elsewhere. Blocks
that ``calibrate`` run the attacks at their real budgets: calibration needs attacks that
recover samples (docs/calibration.md runs it on a model they break, with ``--n 16``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from typer.testing import CliRunner, Result

from leakaudit import demo
from leakaudit.attacks import dlg, ig
from leakaudit.cli import app
from leakaudit.models import build_model
from leakaudit.scores.options import ScoreOptions

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Pages whose ```python blocks are complete programs (run in order, one namespace).
PYTHON_DOCS = ("docs/index.md", "docs/python-api.md")

#: Inputs every block finds in its working directory (all from scikit-learn's digits):
#: ``data/`` an ImageFolder (classes 0, 1, 2; two 8×8 PNGs each, read as RGB),
#: ``data.npz`` / ``data.pt`` the same six images as tensors ``[6, 3, 8, 8]``,
#: ``model.pt`` / ``model.safetensors`` a ``lenet`` state_dict for them (3 classes),
#: ``leakaudit.yaml`` a config scanning ``data/`` with ``model.pt``,
#: ``report.json`` / ``scan.json`` that config's scan report (made when a block names it),
#: ``sample_configs/`` the repository's sample configs (the trained digits MLP is complete).
FIXTURES = (
    "data",
    "data.npz",
    "data.pt",
    "model.pt",
    "model.safetensors",
    "leakaudit.yaml",
    "report.json",
    "scan.json",
    "sample_configs",
)

#: The real attack budgets: blocks that ``calibrate`` run them uncapped (a capped attack
#: recovers nothing, and calibrate then exits 1 by design).
REAL_IG_BUDGETS = dict(ig.IG_BUDGETS)
REAL_DLG_ITERATIONS = dict(dlg.DLG_ITERATIONS)

#: Fixture names that hold a scan report.
REPORTS = ("report.json", "scan.json")

CONFIG = """\
model:
  name: lenet
  checkpoint: model.pt
data:
  kind: imagefolder
  root: data/
"""

_EXIT_COMMENT = re.compile(r"#.*?\bexit(?:s|\s+code)?\s*[:=]?\s*(\d+)\b", re.IGNORECASE)
_REDIRECT = re.compile(r"^(\d?|&)(>>?)(.*)$")
_STOP = {"|", "||", "&&", ";", "&"}


@dataclasses.dataclass(frozen=True)
class Command:
    """One documented command line."""

    doc: str  # path relative to the repository root
    line: int  # 1-based line of the command in the doc
    text: str  # the command as written (continuations joined)
    argv: tuple[str, ...]  # arguments after ``leakaudit``
    stdout_to: str | None  # file that ``>`` sends stdout to
    stderr_to: str | None  # file that ``2>`` sends stderr to
    expected_exit: int

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def bash_blocks(path: Path) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """``(first line, [(line number, text), ...])`` of each fenced ```bash block."""
    block: list[tuple[int, str]] | None = None
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if block is None and re.fullmatch(r"```\s*(bash|sh|shell|console)\s*", stripped):
            block, start = [], number
        elif block is not None and stripped.startswith("```"):
            yield start, block
            block = None
        elif block is not None:
            block.append((number, raw))


def parse_command(doc: str, number: int, text: str) -> Command:
    """Split one ``leakaudit ...`` line into arguments, redirections and expected exit."""
    match = _EXIT_COMMENT.search(text)
    expected = int(match.group(1)) if match else 0
    tokens = shlex.split(text, comments=True)
    argv: list[str] = []
    stdout_to = stderr_to = None
    it = iter(tokens[1:])
    for token in it:
        if token in _STOP:
            break
        redirect = _REDIRECT.match(token)
        if redirect:
            fd, _, target = redirect.groups()
            target = target or next(it, "")
            if target.startswith("&"):  # 2>&1: both streams end up in the same place
                continue
            if fd in ("", "1", "&"):
                stdout_to = target
            if fd in ("2", "&"):
                stderr_to = target
            continue
        argv.append(token)
    return Command(doc, number, text.strip(), tuple(argv), stdout_to, stderr_to, expected)


def doc_commands(path: Path) -> list[list[Command]]:
    """The ``leakaudit`` commands of each bash block of ``path`` (blocks without one are
    left out)."""
    doc = str(path.relative_to(ROOT))
    out = []
    for _, lines in bash_blocks(path):
        commands = []
        pending: tuple[int, str] | None = None
        for number, raw in lines:
            text = raw.strip()
            if pending is not None:
                number, text = pending[0], pending[1] + " " + text
                pending = None
            if text.endswith("\\"):
                pending = (number, text[:-1].rstrip())
                continue
            text = text.removeprefix("$ ")
            if text.startswith("leakaudit ") or text == "leakaudit":
                commands.append(parse_command(doc, number, text))
        if commands:
            out.append(commands)
    return out


BLOCKS = [block for path in DOCS for block in doc_commands(path)]


def _digits_rgb(n_classes: int = 3, per_class: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 8, 8]`` uint8 digits (first ``per_class`` of each class) and ``[N]`` labels."""
    digits = load_digits()
    picks = [np.flatnonzero(digits.target == c)[:per_class] for c in range(n_classes)]
    idx = np.concatenate(picks)
    images = np.round(digits.images[idx] * (255 / 16)).astype(np.uint8)
    return images, digits.target[idx].astype(np.int64)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs of :data:`FIXTURES`, built once from scikit-learn's digits."""
    root = tmp_path_factory.mktemp("docs_inputs")
    images, labels = _digits_rgb()
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "data" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{k:03d}.png")
    rgb = np.repeat(images[:, None], 3, axis=1)  # [N, 3, 8, 8] uint8
    np.savez(root / "data.npz", x=rgb, y=labels)
    torch.save({"x": torch.from_numpy(rgb), "y": torch.from_numpy(labels)}, root / "data.pt")
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=3, in_channels=3, image_size=8)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, root / "model.pt")
    save_file(state, str(root / "model.safetensors"))
    (root / "leakaudit.yaml").write_text(CONFIG)
    shutil.copytree(ROOT / "sample_configs", root / "sample_configs")
    return root


@pytest.fixture
def fast_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cap the engine's and the attacks' work (see the module docstring for why)."""
    check = ScoreOptions.__post_init__

    def capped(self: ScoreOptions) -> None:
        check(self)
        object.__setattr__(self, "max_iter", min(self.max_iter, 12))
        # a multiple of ``blocks`` still (a batch scan gives each of its B blocks a probe)
        object.__setattr__(self, "n_probes", min(self.n_probes, max(2, self.blocks)))

    monkeypatch.setattr(ScoreOptions, "__post_init__", capped)
    full_demo = demo.demo_config

    def small_demo():  # type: ignore[no-untyped-def]
        cfg = full_demo()
        cfg.data.per_class = 1
        return cfg

    monkeypatch.setattr(demo, "demo_config", small_demo)
    for budget in dlg.DLG_ITERATIONS:
        monkeypatch.setitem(dlg.DLG_ITERATIONS, budget, 2)
    for budget in ig.IG_BUDGETS:
        monkeypatch.setitem(ig.IG_BUDGETS, budget, (2, 1))


def _fixture_reports(workspace: Path) -> None:
    """Write the :data:`REPORTS` (the fixture config's scan) once."""
    path = workspace / REPORTS[0]
    if not path.exists():
        result = CliRunner().invoke(
            app, ["scan", "--config", str(workspace / "leakaudit.yaml"), "--json", str(path)]
        )
        assert result.exit_code == 0, result.output
        for name in REPORTS[1:]:
            shutil.copy(path, workspace / name)


def _written(cmd: Command, flag: str) -> str | None:
    """The value of ``flag`` (``--json``, ``--output``...) in ``cmd``, if given."""
    args = list(cmd.argv)
    for k, arg in enumerate(args):
        if arg == flag and k + 1 < len(args):
            return args[k + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def check_outputs(cmd: Command, result: Result, cwd: Path) -> None:
    """Assert what the command says it writes was written, and looks right."""
    where = f"{cmd.where}: `{cmd.text}`"
    command = cmd.argv[0] if cmd.argv else ""
    if "--help" in cmd.argv or "--version" in cmd.argv:
        assert result.stdout.strip(), f"{where}: printed nothing"
        return
    if command == "scan" and cmd.expected_exit in (0, 1):
        # A scan without gate rules exits 0 saying so ("gate: not configured").
        verdicts = ["gate passed", "gate: not configured"] if cmd.expected_exit == 0 else []
        verdicts = verdicts or ["gate failed"]
        assert any(v in result.stderr for v in verdicts), f"{where}: {verdicts}?\n{result.stderr}"
        fmt = _written(cmd, "--format") or _written(cmd, "-f")
        shown = result.stdout
        if _written(cmd, "--output") or _written(cmd, "-o"):
            path = cwd / (_written(cmd, "--output") or _written(cmd, "-o") or "")
            assert path.is_file(), f"{where}: did not write {path.name}"
            shown = path.read_text()
        elif cmd.stdout_to:
            shown = (cwd / cmd.stdout_to).read_text()
        if _written(cmd, "--json") == "-" or fmt == "json":
            assert json.loads(shown)["samples"], f"{where}: no samples in the JSON"
        elif fmt == "md":
            assert shown.startswith("## leakaudit scan"), f"{where}: not the markdown report"
        elif fmt == "sarif":
            assert json.loads(shown)["version"] == "2.1.0", f"{where}: not a SARIF log"
        elif fmt == "junit":
            assert 'testsuite name="leakaudit gate"' in shown, f"{where}: not JUnit XML"
        else:
            stream = result.stderr if _written(cmd, "--json") == "-" else shown
            assert "riskiest samples" in stream, f"{where}: no table of riskiest samples"
        json_path = _written(cmd, "--json")
        if json_path and json_path != "-":
            report = json.loads((cwd / json_path).read_text())
            assert report["samples"], f"{where}: {json_path} holds no samples"
    elif command == "init" and cmd.expected_exit == 0:
        target = next((a for a in cmd.argv[1:] if not a.startswith("-")), None)
        text = result.stdout if target in (None, "-") else (cwd / target).read_text()
        assert "risk_score:" in text, f"{where}: not a config template"
    elif command == "validate" and cmd.expected_exit == 0:
        text = result.stdout if _written(cmd, "--json") != "-" else result.stderr
        assert "median PSNR" in text, f"{where}: no agreement table\n{text}"
        json_path = _written(cmd, "--json")
        if json_path:
            raw = result.stdout if json_path == "-" else (cwd / json_path).read_text()
            assert "validation" in json.loads(raw), f"{where}: not a validation JSON"
        figure = _written(cmd, "--figure")
        if figure:
            assert (cwd / figure).stat().st_size > 0, f"{where}: no figure at {figure}"
    elif command == "calibrate" and cmd.expected_exit == 0:
        assert "held-out Spearman ρ" in result.stdout, f"{where}: no held-out ρ\n{result.stdout}"
        path = cwd / (_written(cmd, "--output") or _written(cmd, "-o") or "calibration.json")
        assert json.loads(path.read_text())["status"] == "calibrated", f"{where}: {path.name}"
    elif cmd.expected_exit == 2:
        assert result.stderr.startswith("error: "), f"{where}: no one-line error on stderr"


def run_block(block: list[Command], workspace: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "work"
    shutil.copytree(workspace, cwd)
    monkeypatch.chdir(cwd)
    for cmd in block:
        known = {c.name for c in app.registered_commands}
        if cmd.argv and not cmd.argv[0].startswith("-") and cmd.argv[0] not in known:
            pytest.fail(f"{cmd.where}: `{cmd.text}`: leakaudit has no command {cmd.argv[0]!r}")
        if cmd.argv[:1] == ("init",) and "--force" not in cmd.argv:
            # The block writes its own config: do not let the fixture's copy block it.
            for arg in cmd.argv[1:]:
                if arg in FIXTURES and (cwd / arg).is_file():
                    (cwd / arg).unlink()
        result = CliRunner().invoke(app, list(cmd.argv))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == cmd.expected_exit, (
            f"{cmd.where}: `{cmd.text}` exited {result.exit_code}, the doc implies "
            f"{cmd.expected_exit}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n"
            f"{result.stderr[-2000:]}"
        )
        if cmd.stdout_to:
            (cwd / cmd.stdout_to).write_text(result.stdout)
        if cmd.stderr_to:
            (cwd / cmd.stderr_to).write_text(result.stderr)
        check_outputs(cmd, result, cwd)


@pytest.mark.parametrize("block", BLOCKS, ids=[b[0].where for b in BLOCKS])
def test_documented_commands_run(
    block: list[Command],
    workspace: Path,
    fast_engine: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if any(name in c.argv for c in block for name in REPORTS):
        _fixture_reports(workspace)
    if any(c.argv[:1] == ("calibrate",) for c in block):
        for budget, real in REAL_IG_BUDGETS.items():
            monkeypatch.setitem(ig.IG_BUDGETS, budget, real)
        for budget, iters in REAL_DLG_ITERATIONS.items():
            monkeypatch.setitem(dlg.DLG_ITERATIONS, budget, iters)
    run_block(block, workspace, tmp_path, monkeypatch)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(first line, code)`` of each fenced ```python block of ``path``."""
    blocks, code, start = [], None, 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if code is None and re.fullmatch(r"```\s*python\s*", raw.strip()):
            code, start = [], number + 1
        elif code is not None and raw.strip().startswith("```"):
            blocks.append((start, "\n".join(code)))
            code = None
        elif code is not None:
            code.append(raw)
    return blocks


@pytest.mark.parametrize("doc", PYTHON_DOCS)
def test_python_examples_run(
    doc: str, workspace: Path, fast_engine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = python_blocks(ROOT / doc)
    assert blocks, f"{doc} has no python examples"
    shutil.copytree(workspace, tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    for line, code in blocks:
        # Line numbers in tracebacks point into the doc.
        exec(compile("\n" * (line - 1) + code, str(ROOT / doc), "exec"), namespace)


def test_docs_show_the_main_commands() -> None:
    """The collector finds commands: the getting-started page and the README's workflow."""
    where = {c.doc for block in BLOCKS for c in block}
    assert "README.md" in where
    assert "docs/index.md" in where
    shown = {" ".join(c.argv[:2]) for block in BLOCKS for c in block}
    assert "scan --demo" in shown


def test_parse_command_redirections_and_exit_comment() -> None:
    cmd = parse_command(
        "x.md",
        3,
        "leakaudit scan -c a.yaml --fail-on 'i2f<0.5' > out.md 2>err.txt | tee  # exits 1",
    )
    assert cmd.argv == ("scan", "-c", "a.yaml", "--fail-on", "i2f<0.5")
    assert (cmd.stdout_to, cmd.stderr_to, cmd.expected_exit) == ("out.md", "err.txt", 1)


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, target)`` of every relative markdown link outside code blocks."""
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue
            yield number, target


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{n}: {target}"
        for n, target in relative_links(path)
        if not (path.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)
