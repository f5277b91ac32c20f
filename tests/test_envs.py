"""The conda environment files pin the same versions as the pip lock that CI installs, and
each holds what its rules' jobs import (`--software-deployment-method conda`)."""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def lock_versions(lock="requirements.lock"):
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_env_pin_equals_the_lock():
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        pins = lock_versions("requirements-gpu.lock" if env.stem.endswith("-gpu") else "requirements.lock")
        spec = yaml.safe_load(env.read_text())
        pip = [item for item in spec["dependencies"] if isinstance(item, dict)][0]["pip"]
        assert pip, env
        for requirement in pip:
            name, version = requirement.split("==")
            name = re.sub(r"\[.*\]", "", name).lower().replace("_", "-")
            assert pins.get(name) == version, f"{env.name}: {requirement} but requirements.lock has {pins.get(name)}"


def test_every_rule_names_an_existing_env():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env}"


@pytest.mark.parametrize("env", ["musicnn", "tensorflow", "tensorflow-gpu"])
def test_post_deploy_installs_pin_the_lock_versions(env):
    """musicnn and tf-keras come from envs/<env>.post-deploy.sh (with --no-deps): musicnn's
    jobs need them, and so does predicting with a musicnn bundle (its embedding runs in a
    process of its own in the TensorFlow environment)."""
    pins = lock_versions("requirements-gpu.lock" if env.endswith("-gpu") else "requirements.lock")
    script = (REPO / "envs" / f"{env}.post-deploy.sh").read_text()
    assert "--no-deps" in script
    found = dict(re.findall(r"([A-Za-z0-9_\-]+)==(\S+)", script))
    assert {name.lower().replace("_", "-") for name in found} == {"musicnn", "tf-keras"}
    for name, version in found.items():
        assert pins[name.lower().replace("_", "-")] == version, name


def test_the_gpu_lock_is_the_lock_with_gpu_tensorflow():
    """requirements-gpu.lock differs from requirements.lock only in TensorFlow's wheel and
    its CUDA libraries, so the two installs cannot drift apart."""
    cpu, gpu = lock_versions(), lock_versions("requirements-gpu.lock")
    assert cpu.pop("tensorflow-cpu") == gpu.pop("tensorflow") == "2.21.0"
    cuda = {name for name in gpu if name.startswith("nvidia-")}
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= cuda
    assert {name: gpu[name] for name in gpu if name not in cuda} == cpu
    gpu_env = yaml.safe_load((REPO / "envs" / "tensorflow-gpu.yaml").read_text())
    assert "tensorflow==2.21.0" in [item for item in gpu_env["dependencies"] if isinstance(item, dict)][0]["pip"]


# ------------------------------------------------ what each rule's job imports, and its env
SCRIPTS = REPO / "workflow_scripts"


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_envs():
    """rule -> (its script, its conda env files) from rules/*.smk; `use rule ... with:`
    inherits what it does not set. GPU_ENV is either TensorFlow env (config)."""
    blocks = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        heads = list(re.finditer(r"^(?:(?:rule|checkpoint) (\w+)|use rule (\w+) as (\w+) with):", text, re.M))
        for head, following in zip(heads, [*heads[1:], None]):
            body = text[head.end(): following.start() if following else len(text)]
            name = head.group(1) or head.group(3)
            conda = re.search(r"^    conda:\n\s+(\S+)", body, re.M)
            script = re.search(r'^    script:\n\s+"([^"]+)"', body, re.M)
            blocks[name] = {
                "base": head.group(2),
                "conda": conda.group(1) if conda else None,
                "script": (smk.parent / script.group(1)).resolve() if script else None,
            }
    rules = {}
    for name, block in blocks.items():
        base = blocks[block["base"]] if block["base"] else {}
        script = block["script"] or base.get("script")
        conda = block["conda"] or base.get("conda")
        if script is None:
            continue
        assert conda, f"rule {name} runs {script.name} without a conda env"
        if conda == "GPU_ENV":
            envs = ["tensorflow.yaml", "tensorflow-gpu.yaml"]
        else:
            envs = [Path(conda.strip('"')).name]
        rules[name] = (script, envs)
    return rules


def _module_file(name):
    base = SCRIPTS.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _imports(node, package):
    """Module names an import statement names (relative ones resolved in `package`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join([*parts, *([node.module] if node.module else [])])
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def _names(nodes):
    """Every name the code uses: variables, attributes, names imported from modules."""
    found = set()
    for node in (inner for outer in nodes for inner in ast.walk(outer)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names)
    return found


def imported_modules(script):
    """Top-level names of the non-standard-library modules a script's job can import.

    From the script, every genreflow module it imports (with its packages' __init__) is
    reached, and in it the module-level code (classes included) and every top-level
    function whose name the reached code uses anywhere; their imports, at any depth and
    inside functions too (genreflow imports heavy libraries where they are used), are
    followed the same way. Matching by name over-approximates what one job imports, never
    under-approximates it, and keeps a CPU job from "importing" TensorFlow because a
    module it uses also holds a TensorFlow helper it never calls."""
    external, used = set(), set()
    modules, functions, done = set(), {}, set()
    units = [(script, "", ast.parse(script.read_text()).body)]

    def reach_module(name):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # packages' __init__ run first
            path = _module_file(".".join(parts[:i]))
            if path is None or path in modules:
                continue
            modules.add(path)
            package = ".".join(parts[: i if path.name == "__init__.py" else i - 1])
            body = ast.parse(path.read_text()).body
            defs = (ast.FunctionDef, ast.AsyncFunctionDef)
            for node in body:
                if isinstance(node, defs):
                    functions[(path, node.name)] = (package, node)
            units.append((path, package, [node for node in body if not isinstance(node, defs)]))

    while units:
        while units:
            path, package, nodes = units.pop()
            used |= _names(nodes)
            for node in (inner for outer in nodes for inner in ast.walk(outer)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    # `python -m genreflow.audio_embeddings`: a process of its own, in the
                    # same environment (prediction with a musicnn bundle)
                    if re.fullmatch(r"genreflow(\.\w+)+", node.value) and _module_file(node.value):
                        reach_module(node.value)
                    continue
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                for name in _imports(node, package):
                    top = name.split(".")[0]
                    if top == "genreflow":
                        reach_module(name)
                    elif top not in sys.stdlib_module_names and top != "__future__":
                        external.add(top)
        for key, (package, node) in list(functions.items()):
            if key not in done and key[1] in used:
                done.add(key)
                units.append((key[0], package, [node]))
    return external


def env_distributions(env):
    """What `env` installs: its pip packages and everything they require (resolved from the
    installed packages' metadata, the same versions as the lock), and its post-deploy
    script's --no-deps packages. The GPU env's `tensorflow` requires what tensorflow-cpu does."""
    from packaging.requirements import Requirement

    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    pip = [item for item in spec["dependencies"] if isinstance(item, dict)][0]["pip"]
    listed = [normalize(re.split(r"[=<>\[]", requirement)[0]) for requirement in pip]
    closure, todo = set(), list(listed)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires("tensorflow-cpu" if name == "tensorflow" else name) or []
        except metadata.PackageNotFoundError:
            continue  # the CUDA wheels of the GPU env: not installed here, and no imports
        for requirement in map(Requirement, requires):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(normalize(requirement.name))
    post_deploy = REPO / "envs" / env.replace(".yaml", ".post-deploy.sh")
    if post_deploy.is_file():
        closure |= {normalize(name) for name in re.findall(r"([A-Za-z0-9_\-]+)==", post_deploy.read_text())}
    if "tensorflow" in closure:
        closure.add("tensorflow-cpu")  # the module `tensorflow` maps to the wheel installed here
    return closure


def test_every_rule_env_holds_what_its_job_imports():
    """For every rule, each module its script can import (statically, through genreflow)
    comes from a distribution its conda env installs. Checked without building an env."""
    providers = metadata.packages_distributions()
    rules = rule_envs()
    assert {"make_images", "tune_round", "predict_shard", "embed_audio"} <= set(rules)
    missing = []
    for rule, (script, envs) in sorted(rules.items()):
        modules = imported_modules(script)
        for env in envs:
            installed = env_distributions(env)
            for module in sorted(modules):
                dists = {normalize(dist) for dist in providers.get(module, [])}
                assert dists, f"{module} (imported by {script.name}) is not installed in the test venv"
                if not dists & installed:
                    missing.append(f"{env}: {module} ({'/'.join(sorted(dists))}) for rule {rule} ({script.name})")
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_import_walk_sees_imports_inside_functions():
    """The walk is what makes the test above mean something: scipy.fft is imported inside
    genreflow.features.power_stft, sklearn inside the fold functions, musicnn inside
    genreflow.audio_embeddings; and TensorFlow only where a job reaches a function that
    imports it."""
    assert "scipy" in imported_modules(SCRIPTS / "make_images.py")
    assert "sklearn" in imported_modules(SCRIPTS / "tune_round.py")
    assert {"musicnn", "librosa"} <= imported_modules(SCRIPTS / "embed_audio.py")
    # and musicnn where a bundle may be a musicnn one: its embedding runs as
    # `python -m genreflow.audio_embeddings` in the job's environment
    assert {"soundfile", "soxr", "tensorflow", "musicnn", "librosa"} <= imported_modules(
        SCRIPTS / "predict_shard.py")
    assert "tensorflow" not in imported_modules(SCRIPTS / "check_clips.py")


def test_the_import_walk_follows_only_functions_the_code_uses(tmp_path, monkeypatch):
    """A module-level import counts; a function's import counts once a reached piece of
    code names the function, and not before."""
    package = tmp_path / "genreflow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(
        "import numpy\n\n"
        "def used():\n    import scipy.fft\n    return later()\n\n"
        "def later():\n    import soundfile\n\n"
        "def unused():\n    import tensorflow\n")
    script = tmp_path / "job.py"
    script.write_text("from genreflow.helpers import used\nused()\n")
    monkeypatch.setattr(sys.modules[__name__], "SCRIPTS", tmp_path)
    assert imported_modules(script) == {"numpy", "scipy", "soundfile"}
    (package / "child.py").write_text("import pandas\n")
    script.write_text("import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'genreflow.child'])\n")
    assert imported_modules(script) == {"pandas"}
