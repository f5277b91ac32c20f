"""The conda environment files pin the same versions as the pip lock that CI installs."""

import re

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


def test_post_deploy_installs_pin_the_lock_versions():
    """musicnn and tf-keras come from envs/musicnn.post-deploy.sh (with --no-deps)."""
    pins = lock_versions()
    script = (REPO / "envs" / "musicnn.post-deploy.sh").read_text()
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
