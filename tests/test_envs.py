"""The conda environment files pin the same versions as the pip lock that CI installs."""

import re

import yaml

from conftest import REPO


def lock_versions():
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_env_pin_equals_the_lock():
    pins = lock_versions()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
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
