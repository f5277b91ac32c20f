"""Every `snakemake` command the README gives, and every fix an error message suggests,
runs as written (issue 26): Snakemake's `--config` takes no dotted keys, and a
`--config backbones.weights=imagenet` ended in a traceback before genreflow ran at all.

Each command is dry-run (`-n` added; nothing is submitted to a cluster) from a directory
laid out as the repository (its Snakefile, rules, scripts, profiles and config.yaml), with
a tiny GTZAN-layout corpus and a music folder in place of the README's placeholder paths.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_tiny_gtzan

pytestmark = pytest.mark.workflow

README = (REPO / "README.md").read_text()
# Commands that cannot be dry-run, and where they are run for real instead.
NOT_DRY_RUN = {
    "snakemake --lint": "tests/test_workflow.py::test_lint_format_and_dry_run_are_clean runs it",
    "snakemake --report report.html": "a report needs a finished run; "
    "tests/test_final_workflow.py::test_report_zip_holds_every_figure builds the tiny run's",
    "snakemake --report report.html predict": "a report needs a finished run (as above)",
}
# Commands (or options) that need one more value, and whose error says which: the test
# follows the fix the error suggests, which must then run as written too.
ASK_FOR_MORE = {
    "snakemake predict": "predict.input",
    "--config preset=gtzan": "dataset.root",
    "--config preset=gtzan_filtered": "dataset.root",
}
PLACEHOLDERS = ("/data/gtzan", "/path/to/gtzan", "/path/to/music")


def shell_commands(line):
    """The commands of one shell line (comments cut, split at && ; |), as argv lists."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if set(token) <= set("&;|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [command for command in [*commands, current] if command]


def is_snakemake(argv):
    return Path(argv[0]).name == "snakemake"


def readme_commands():
    """`snakemake ...` commands of the README's code blocks and inline code, and inline
    `--config ...` options (meant to be added to a command), in the README's words."""
    found = []
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M)
    for block in blocks:
        for line in block.splitlines():
            found += [shlex.join(argv) for argv in shell_commands(line) if is_snakemake(argv)]
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", README, flags=re.S | re.M)
    for code in re.findall(r"`([^`\n]+)`", prose):
        if re.match(r"snakemake( |$)", code) or re.match(r"--config \S", code):
            found.append(shlex.join(shlex.split(code)))
    return list(dict.fromkeys(found))


COMMANDS = readme_commands()


def test_the_readme_commands_are_found():
    """The extraction sees the README's commands (so that the test below cannot pass by
    finding none), and the lists above name only commands the README still gives."""
    assert len(COMMANDS) >= 15, COMMANDS
    for expected in ("snakemake --cores all", "snakemake --profile slurm",
                     "snakemake -n --config 'backbones={weights: imagenet}'",
                     "--config 'training={threads: 4}'"):
        assert expected in COMMANDS, COMMANDS
    assert set(NOT_DRY_RUN) <= set(COMMANDS) and set(ASK_FOR_MORE) <= set(COMMANDS)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A directory laid out as the repository (the README's commands run from there), a
    home whose ~/.config/snakemake has the slurm profile installed by the README's own
    command, and the folders the placeholders stand for."""
    root = tmp_path_factory.mktemp("readme")
    where = root / "genreflow"
    where.mkdir()
    for name in ("Snakefile", "rules", "workflow_scripts", "profiles", "envs"):
        (where / name).symlink_to(REPO / name)
    (where / "config.yaml").write_text((REPO / "config.yaml").read_text())
    corpus = root / "gtzan"
    make_tiny_gtzan(corpus, clips_per_genre=2, seconds=2.0)
    music = root / "music"
    music.mkdir()
    (music / "song.wav").write_bytes((corpus / "genres_original/blues/blues.00000.wav").read_bytes())
    env = {key: value for key, value in os.environ.items() if key != "XDG_CONFIG_HOME"}
    env["HOME"] = str(root / "home")
    (root / "home").mkdir()
    install = re.search(r"^mkdir -p ~/\.config/snakemake && ln -s .*$", README, re.M).group(0)
    subprocess.run(["bash", "-c", install], cwd=where, env=env, check=True)
    assert (root / "home/.config/snakemake/slurm/config.yaml").is_file()
    paths = {"/data/gtzan": str(corpus), "/path/to/gtzan": str(corpus), "/path/to/music": str(music)}
    return where, env, paths


def substitute(argv, paths):
    out = []
    for token in argv:
        for placeholder in PLACEHOLDERS:
            token = token.replace(placeholder, paths[placeholder])
        out.append(token)
    return out


def dry_run(argv, checkout):
    """Run a README command (or `--config ...` option, added to `snakemake`) as a dry run."""
    where, env, paths = checkout
    argv = substitute(argv, paths)
    if not is_snakemake(argv):
        argv = ["snakemake", *argv]
    args = argv[1:]
    if "-n" not in args and "--unlock" not in args:
        args = ["-n", *args]
    done = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=where, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def suggested_fixes(message):
    """The `--config ...` values and the `snakemake ...` commands an error message suggests,
    as argv lists (trailing punctuation of the sentence cut)."""
    configs = [
        shlex.split(values)
        for values in re.findall(r"--config ((?:[A-Za-z_][\w-]*=(?:'[^']*'|[^\s'()]+)\s?)+)", message)
    ]
    configs = [[value.rstrip(".,;") for value in values] for values in configs]
    commands = [shlex.split(command) for command in re.findall(r"`(snakemake [^`]+)`", message)]
    commands += [shlex.split(command) for command in
                 re.findall(r"run (snakemake \w+ --config \S+='[^']*')", message)]
    return configs, commands


def with_config(argv, values):
    """argv with `values` added to its --config (Snakemake's --config takes several)."""
    if "--config" in argv:
        at = argv.index("--config") + 1
        while at < len(argv) and not argv[at].startswith("-"):
            at += 1
        return [*argv[:at], *values, *argv[at:]]
    return [*argv, "--config", *values]


def assert_clean(code, output, command):
    assert code == 0, f"{command}:\n{output[-4000:]}"
    assert "Traceback" not in output and "Exception" not in output, f"{command}:\n{output[-4000:]}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_runs_as_written(command, checkout):
    if command in NOT_DRY_RUN:
        pytest.skip(NOT_DRY_RUN[command])
    argv = shlex.split(command)
    code, output = dry_run(argv, checkout)
    if command not in ASK_FOR_MORE:
        assert_clean(code, output, command)
        return
    # the error names what is missing and how to give it; that fix runs as written
    assert code != 0 and ASK_FOR_MORE[command] in output, output[-4000:]
    configs, commands = suggested_fixes(output)
    assert configs or commands, output[-4000:]
    fixed = commands[0] if commands else with_config(argv, configs[0])
    code, output = dry_run(fixed, checkout)
    assert_clean(code, output, shlex.join(fixed))


def error_messages(tmp_path):
    """Every error message of the package that suggests a --config value or a snakemake
    command, made by the code that raises it."""
    from genreflow.config import ConfigError, validate_config
    from genreflow.models.backbones import resolve_weights
    from genreflow.run_info import caveats
    from genreflow.splits import PublishedList, check_published_list, fetch_published_lists

    import yaml

    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    messages = []
    for overrides in ({"dataset": {"kind": "gtzan"}},
                      {"dataset": {"kind": "gtzan", "root": str(tmp_path / "gone")}},
                      {"predict": {"input": str(tmp_path / "gone")}}):
        with pytest.raises(ConfigError) as error:
            validate_config(demo, overrides=overrides)
        messages.append(str(error.value))
    messages += caveats({"corpus": "gtzan", "split": "random", "weights_source": "imagenet"})
    target = "resources/weights/vgg16/imagenet_notop.h5"
    with pytest.raises(FileNotFoundError) as error:
        resolve_weights("imagenet", target, "vgg16")
    messages.append(str(error.value))
    wrong = tmp_path / "imagenet_notop.h5"
    wrong.write_bytes(b"not the published file")
    with pytest.raises(ValueError) as error:
        resolve_weights("imagenet", str(wrong), "vgg16")
    messages.append(str(error.value).replace(str(wrong), target))
    listed = tmp_path / "train_filtered.txt"
    listed.write_text("blues/blues.00000.wav\n")
    with pytest.raises(ValueError) as error:
        check_published_list(listed, "0" * 64, "https://example.org/train_filtered.txt")
    messages.append(str(error.value))
    # a port nothing listens on: the error for a machine without internet
    offline = PublishedList("train", "http://127.0.0.1:9/train_filtered.txt", "0" * 64,
                            str(tmp_path / "lists/train_filtered.txt"))
    with pytest.raises(RuntimeError) as error:
        fetch_published_lists([offline], log=lambda message: None, timeout=5)
    messages.append(str(error.value))
    return messages


def test_every_fix_an_error_message_suggests_parses_and_runs(tmp_path, checkout):
    """Each `--config` value an error suggests is what Snakemake's own parser accepts,
    nested (no dotted keys); each suggested `snakemake` command dry-runs cleanly."""
    from snakemake.cli import parse_config

    messages = error_messages(tmp_path)
    configs, commands = [], []
    for message in messages:
        found_configs, found_commands = suggested_fixes(message)
        configs += found_configs
        commands += found_commands
    assert len(configs) >= 4 and len(commands) >= 4, (configs, commands, messages)
    for values in configs:
        parsed = parse_config(values)
        assert all("." not in key for key in parsed), values
    where, _, paths = checkout
    for argv in {shlex.join(argv): argv for argv in commands}.values():
        code, output = dry_run(argv, checkout)
        assert_clean(code, output, shlex.join(argv))


def test_a_nested_config_value_keeps_the_rest_of_its_block(tmp_path):
    """`--config backbones='{weights: imagenet}'` changes the weights and keeps the
    config's backbone names: Snakemake merges it key by key, and so does genreflow after
    merging a preset."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    import yaml

    from genreflow.config import validate_config

    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    overrides = parse_config(["backbones={weights: imagenet}", "training={threads: 4}"])
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, overrides)  # what Snakemake hands the workflow as `config`
    config = validate_config(merged, overrides=overrides)
    assert config["backbones"]["weights"] == "imagenet"
    assert config["backbones"]["names"] == demo["backbones"]["names"]
    assert config["training"]["threads"] == 4
    assert config["training"]["mixed_precision"] == demo["training"]["mixed_precision"]
    # over a preset: the preset's names stay, the command line's root wins over the preset's
    overrides = parse_config(["preset=gtzan", "backbones={weights: none}", f"dataset={{root: {tmp_path}}}"])
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, overrides)
    with_preset = validate_config(merged, overrides=overrides)
    assert with_preset["backbones"]["weights"] == "none"
    assert len(with_preset["backbones"]["names"]) == 6
    assert with_preset["dataset"] == {**with_preset["dataset"], "kind": "gtzan", "root": str(tmp_path)}


def test_no_file_suggests_a_dotted_config_key():
    """The mistake that started this: `--config a.b=...` anywhere a user reads it."""
    files = [REPO / "README.md", REPO / "config.yaml", *REPO.glob("rules/**/*.smk"),
             *REPO.glob("workflow_scripts/**/*.py"), *REPO.glob("workflow_scripts/**/*.yaml"),
             *REPO.glob("profiles/*/config.yaml")]
    dotted = re.compile(r"--config\s+(?:\S+=\S+\s+)*[A-Za-z_]\w*\.\w[\w.]*=")
    for path in files:
        # Python strings are cut into pieces across lines; join them before looking
        text = re.sub(r"\"\s*\n\s*f?\"", "", path.read_text())
        assert not dotted.search(text), f"{path}: {dotted.search(text).group(0)}"
