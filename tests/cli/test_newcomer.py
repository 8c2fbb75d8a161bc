"""A newcomer's day (issue 14), through the CLI as a subprocess against a real controller:
output scripts and people can rely on, one-line errors in the user's words, capacity told
honestly, events and logs that say which API and when."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_main import write_project
from tests.support.real_parts import Workbench, wait_until
from tests.support.terminal import run_on_terminal
from workbench.spec.loader import load_spec_file

LONG = "ux-greeter-with-a-long-name"
PREDICTOR = """
class Predictor:
    def __init__(self, config):
        print("greeter loaded", flush=True)

    def predict(self, payload):
        return {"message": "hi " + str(payload)}
"""


def piped(bench: Workbench, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI in a pipe, as `workbench get | awk` runs it: no COLUMNS to go by."""
    env = {k: v for k, v in bench.env.items() if k != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"workbench {' '.join(args)} exited {result.returncode}\n{result.stderr}")
    return result


def ctrl_c_works() -> None:
    """In the child: SIGINT as a terminal's Ctrl-C delivers it (a test run in a background job
    inherits it ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def host_cpus(bench: Workbench) -> float:
    hosts = bench.json("hosts")
    assert isinstance(hosts, list)
    return float(hosts[0]["info"]["cpu_count"])


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    """A controller (started by the first deploy, as a newcomer's is) with one API whose name is
    longer than an 80-column table would like."""
    root = tmp_path_factory.mktemp("newcomer")
    workbench = Workbench.create(root / "home")
    project = write_project(root / "long", f"name: {LONG}\nruntime: process\ncompute: {{cpu: 0.05}}\n",
                            PREDICTOR)
    try:
        workbench.run("deploy", str(project))
        yield workbench
    finally:
        workbench.cleanup()


@pytest.fixture(scope="module")
def token(bench: Workbench) -> str:
    return (bench.home / "controller" / "token").read_text().strip()


# -- output scripts and people can rely on (items 1, 2, 3, 4, 5) ----------------------------------
def test_a_pipe_gets_every_name_whole_and_every_column(bench: Workbench) -> None:
    table = piped(bench, "get").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "UP-TO-DATE", "READY", "REQUESTED", "FAILED", "LAST",
                                "UPDATE", "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"]
    assert [line.split()[0] for line in table[1:]] == [LONG]  # what `awk '{print $1}'` sees
    assert all(line == line.rstrip() for line in table)
    assert piped(bench, "get", "-o", "name").stdout == f"{LONG}\n"
    wide = piped(bench, "get", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["RUNTIME", "ARTIFACT", "MESSAGE"]
    assert re.search(rf"{LONG}-[0-9a-f]{{16}}", wide[1]), wide  # the bundle's name, whole
    assert piped(bench, "get", LONG, "-o", "name").stdout == f"{LONG}\n"
    assert piped(bench, "hosts", "-o", "name").stdout == "local\n"
    hosts = piped(bench, "host", "list", "-o", "wide").stdout.splitlines()
    assert hosts[0].split()[0] == "HOST" and "AGENT" in hosts[0] and hosts[1].split()[0] == "local"
    assert piped(bench, "host", "show", "local").stdout.splitlines()[1].split()[0] == "local"


def test_at_80_columns_get_merges_the_replica_counts(bench: Workbench) -> None:
    code, text = run_on_terminal([sys.executable, "-m", "workbench", "get"], bench.env, columns=80)
    assert code == 0, text
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    assert header[:3] == ["NAME", "STATUS", "READY"] and {"REQ/S", "P99", "5XX"} <= set(header)
    assert not {"UP-TO-DATE", "REQUESTED", "FAILED"} & set(header)  # one READY: 1/1
    assert lines[1].split()[:3] == [LONG, "live", "1/1"]
    assert all(len(line) <= 80 for line in lines)
    code, wide = run_on_terminal([sys.executable, "-m", "workbench", "get"], bench.env, columns=200)
    assert code == 0 and "UP-TO-DATE" in wide and "REQUESTED" in wide
    # a terminal too narrow for a name still gets it whole (the terminal wraps; nothing is cut)
    code, narrow = run_on_terminal([sys.executable, "-m", "workbench", "get"], bench.env, columns=30)
    assert code == 0 and LONG in narrow.replace("\n", "") and "…" not in narrow


def test_get_watch_in_a_pipe_prints_each_refresh(bench: Workbench) -> None:
    env = {k: v for k, v in bench.env.items() if k != "COLUMNS"}
    process = subprocess.Popen([sys.executable, "-m", "workbench", "get", "-w"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ctrl_c_works)
    assert process.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while seen.count("---") < 2 and time.monotonic() < deadline:
            seen.append(process.stdout.readline().rstrip("\n"))  # each frame arrives as it is drawn
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert seen.count("---") == 2, seen
    frames = "\n".join(seen).split("---")
    assert all(LONG in frame and "NAME" in frame for frame in frames[:2]), seen
    assert code == 0
    process = subprocess.Popen([sys.executable, "-m", "workbench", "get", "-w", "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ctrl_c_works)
    assert process.stdout is not None
    try:
        documents = [json.loads(process.stdout.readline()) for _ in range(2)]  # JSON lines
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert [[api["name"] for api in document] for document in documents] == [[LONG], [LONG]]


def test_without_a_terminal_workbench_prints_its_help(workbench: Workbench, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "workbench"], env=workbench.env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""  # nothing lands in `>file`, escape codes least of all
    assert "Usage: " in result.stderr and "deploy" in result.stderr  # the help, where people look
    assert "the terminal UI needs a terminal" in result.stderr
    assert not (workbench.home / "controller" / "controller.json").exists(), "nothing may start"


def test_help_shows_flags_as_flags(workbench: Workbench) -> None:
    for args in ((), ("deploy",), ("get",), ("logs",), ("scale",), ("events",), ("host", "add"),
                 ("host", "list"), ("host", "set"), ("host", "idle"), ("image", "prune"),
                 ("image", "bootstrap"), ("controller", "status"), ("cost",)):
        helped = workbench.run(*args, "--help").stdout
        assert "<bool>" not in helped, (args, helped)
        assert "--help" in helped
    assert re.search(r"--json\s+print machine-readable JSON", workbench.run("get", "--help").stdout)


def test_every_json_command_prints_its_error_as_json(bench: Workbench, tmp_path: Path) -> None:
    bad = write_project(tmp_path / "bad", "name: bad\nserving:\n  max_concurency: 2\n", PREDICTOR)
    cases = {
        ("deploy", str(bad), "--json"): (2, "invalid spec; nothing was deployed"),
        ("get", "nope", "--json"): (1, "no API named 'nope'"),
        ("scale", "nope", "--replicas", "-1", "--json"): (2, "--replicas must be 0 or more"),
        ("logs", "nope", "--json"): (1, "no API named 'nope'"),
        ("events", "--api", "nope", "--json"): (1, "no API named 'nope'"),
        ("delete", "nope", "--json"): (1, "no API named 'nope'"),
        ("host", "show", "nope", "--json"): (1, "no host named 'nope'"),
        ("host", "set", "nope", "--price", "1", "--json"): (1, "no host named 'nope'"),
        ("host", "idle", "nope", "--json"): (1, "no host named 'nope'"),
        ("cost", "--since", "soon", "--json"): (2, "--since: 'soon' is not a duration"),
        ("image", "prune", "--keep", "1", "--dry-run", "--json"): (0, None),
    }
    for args, (code, words) in cases.items():
        result = bench.run(*args, check=False)
        assert result.returncode == code, (args, result.stderr)
        answer = json.loads(result.stdout)  # one JSON document, whatever happened
        if words is not None:
            assert isinstance(answer, dict) and answer["error"].startswith(words), (args, answer)
            assert f"error: {answer['error']}" in result.stderr
    problems = json.loads(bench.run("deploy", str(bad), "--json", check=False).stdout)["detail"]
    assert any("serving.max_concurency: unknown field" in line for line in problems)
    lines = [json.loads(line) for line in bench.run("logs", LONG, "--json").stdout.splitlines()]
    assert any(line["line"] == "greeter loaded" for line in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line["time"]) for line in lines)


# -- errors in one line, in the user's words (items 6, 8, 9, 10, 11) --------------------------------
def test_errors_are_one_line_in_the_users_words(bench: Workbench, token: str) -> None:
    for args, words in ((("scale", LONG, "--replicas", "-1"), "error: --replicas must be 0 or more"),
                        (("scale", LONG, "--replicas", "1001"), "error: --replicas must be 1000 or less"),
                        (("scale", LONG, "--max", "0"), "error: --max must be 1 or more")):
        result = bench.run(*args, check=False)
        assert result.returncode == 2 and result.stderr.strip() == words, result.stderr
        assert "pydantic" not in result.stderr
    answer = httpx.post(f"{bench.url}/v1/apis/{LONG}/scale", json={"replicas": -1},
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422 and answer.json() == {"error": "replicas must be 0 or more"}
    fixed = bench.run("scale", LONG, "--min", "2", check=False)
    assert "scale it with --replicas N" in fixed.stderr


def test_square_brackets_are_text_not_markup(bench: Workbench, workbench: Workbench) -> None:
    missing = bench.run("get", "[bold]x", check=False)
    assert missing.returncode == 1 and "no API named '[bold]x'" in missing.stderr
    bad = workbench.run("host", "add", "UX_Bad", "someone@box", check=False)
    assert bad.returncode == 2
    assert "NAME 'UX_Bad' does not match ^[a-z][a-z0-9-]{0,62}$" in bad.stderr
    assert not (workbench.home / "controller" / "controller.json").exists(), "nothing may start"


def test_unknown_names_are_errors_everywhere(bench: Workbench) -> None:
    predicted = bench.run("predict", "nope", "{}", check=False)
    assert predicted.returncode == 1 and predicted.stdout == ""
    assert predicted.stderr.strip() == f"error: no API named 'nope' (deployed: {LONG})"
    events = bench.run("events", "--api", "nope", check=False)
    assert events.returncode == 1 and "no API named 'nope'" in events.stderr
    assert bench.run("events", "--api", LONG).returncode == 0


def test_the_readme_errors_are_attributes_of_workbench() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    named = re.search(r"errors name their cause: ([A-Za-z, ]+)", readme)
    assert named, "the README's Python example names its errors"
    names = [name.strip() for name in named.group(1).split(",")]
    code = ("import workbench\n"
            f"for name in {names!r}:\n"
            "    kind = getattr(workbench, name)\n"
            "    assert issubclass(kind, workbench.WorkbenchError), name\n"
            "    assert name in dir(workbench), name\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == "ok\n", result.stderr


def test_body_limits_take_sizes_and_a_413_names_its_setting(workbench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "small", "name: small\nruntime: process\ncompute: {cpu: 0.05}\n"
                            "serving: {max_body_bytes: 1Ki}\n", PREDICTOR)
    workbench.run("deploy", str(project))
    too_big = workbench.run("predict", "small", json.dumps("x" * 2000), check=False)
    assert too_big.returncode == 1
    assert "request body over 1Ki (1024 bytes): the API's serving.max_body_bytes" in too_big.stderr
    big = write_project(tmp_path / "big", "name: big\nruntime: process\nserving: {max_body_bytes: 1Gi}\n",
                        PREDICTOR)
    assert load_spec_file(str(big)).apis[0].spec.serving.max_body_bytes == 2**30


# -- capacity told honestly (items 13, 14, 15, 18) -------------------------------------------------
def test_a_spec_no_host_could_ever_hold_fails_at_deploy(bench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "huge", "name: huge\nruntime: process\ncompute: {cpu: 1000}\n",
                            PREDICTOR)
    result = bench.run("deploy", str(project), check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert "huge: no host could ever run a replica: it asks for 1000 cores and the largest host, local, has" \
        in result.stderr
    assert "huge" not in [api["name"] for api in bench.json("get")]  # type: ignore[union-attr]


def test_piped_deploy_output_keeps_hashes_and_errors_whole(bench: Workbench, tmp_path: Path) -> None:
    """In a pipe (taken as 80 wide) a deploy's lines are never hard-wrapped: an artifact's hash and
    an error stay on one line, as a CI log or `2>&1 | grep` needs them."""
    name = "ux-greeter-" + "x" * 52  # the longest name a spec may have
    project = write_project(tmp_path / "longest", f"name: {name}\nruntime: process\ncompute: {{cpu: 0.05}}\n",
                            PREDICTOR)
    huge = write_project(tmp_path / "huge", "name: huge\nruntime: process\ncompute: {cpu: 1000}\n", PREDICTOR)
    try:
        deployed = piped(bench, "deploy", str(project))
        assert re.search(rf"^{name}: built {name}-[0-9a-f]{{16}}\b", deployed.stderr, re.MULTILINE), \
            deployed.stderr
        assert re.search(rf"^✓ {name}", deployed.stdout, re.MULTILINE), deployed.stdout
        assert name in piped(bench, "get", "-o", "name").stdout.splitlines()
        refused = piped(bench, "deploy", str(huge), check=False)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and len(errors[0]) > 80, refused.stderr
        assert "no host could ever run a replica" in errors[0] and errors[0].endswith("Nothing was deployed")
    finally:
        bench.run("delete", name, check=False)


def test_scale_beyond_room_warns_and_get_says_how_many_wait(bench: Workbench, tmp_path: Path,
                                                          token: str) -> None:
    share = int((host_cpus(bench) - 0.1) / 2 * 100) / 100  # two fill the host beside the long-named API
    spec = f"name: roomy\nruntime: process\ncompute: {{cpu: {share:g}}}\n"
    project = write_project(tmp_path / "roomy", spec, PREDICTOR)
    try:
        bench.run("deploy", str(project))
        scaled = bench.run("scale", "roomy", "--replicas", "3")
        assert "✓ roomy: 3 replica(s) requested" in scaled.stdout
        assert "warning: room for 1 of 2 more replica(s) now (no CPU): local lacks CPU" in scaled.stderr
        assert "reserved by replicas" in scaled.stderr

        def two_serve() -> dict[str, object] | None:
            found = [a for a in bench.json("get") if a["name"] == "roomy"]  # type: ignore[union-attr]
            return found[0] if found and found[0]["replicas"]["ready"] == 2 and found[0]["note"] else None

        api = wait_until(two_serve, 60, what="two replicas of three serving")
        assert api["status"] == "live" and api["note"] == "1 pending: no CPU"
        listed = piped(bench, "get")
        assert re.search(r"^roomy\s+live\s+2\s+2\s+3\s+0", listed.stdout, re.MULTILINE), listed.stdout
        assert "roomy: 1 pending: no CPU" in listed.stderr  # said beside the table, not in it
        assert "2/3 ready (1 pending: no CPU)" in piped(bench, "get", "roomy").stdout

        # a restart on a full host: the old replica stops first, and an event says when it is back
        bench.run("scale", "roomy", "--replicas", "2")
        detail = wait_until(lambda: (d := bench.json("get", "roomy"))["replicas"]["ready"] == 2  # type: ignore[index]
                            and len(d["replica_list"]) == 2 and d, 60, what="two ready")  # type: ignore[index]
        old = detail["replica_list"][0]["id"]  # type: ignore[index]
        restart = httpx.post(f"{bench.url}/v1/apis/roomy/replicas/{old}/restart",
                             headers={"Authorization": f"Bearer {token}"})
        assert restart.status_code == 202

        def back() -> list[str] | None:
            messages = [e["message"] for e in bench.json("events", "--api", "roomy")]  # type: ignore[union-attr]
            return messages if any(f"replica {old} restarted: 2/2 replicas ready again" in m
                                   for m in messages) else None

        messages = wait_until(back, 90, what="the restart to be done")
        assert any("stopping it on local first" in m and old in m for m in messages), messages
        ids = [r["id"] for r in bench.json("get", "roomy")["replica_list"]]  # type: ignore[index]
        assert old not in ids and len(ids) == 2
    finally:
        bench.run("delete", "roomy", check=False)


def test_a_redeploy_says_it_undoes_a_scale(bench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "undo", "name: undo\nruntime: process\ncompute: {cpu: 0.05}\n",
                            PREDICTOR)
    try:
        bench.run("deploy", str(project))
        bench.run("scale", "undo", "--replicas", "2")
        again = bench.run("deploy", str(project))
        assert "  replicas 2 → 1, as workbench.yaml says" in again.stdout
        assert bench.json("get", "undo")["replicas"]["requested"] == 1  # type: ignore[index]
        events = [e["message"] for e in bench.json("events", "--api", "undo")]  # type: ignore[union-attr]
        assert any("replicas 2 → 1, as workbench.yaml says" in m for m in events)
    finally:
        bench.run("delete", "undo", check=False)


# -- events and logs (items 19, 20, 21, 24) --------------------------------------------------------
def test_events_have_a_header_an_api_column_and_since(bench: Workbench) -> None:
    table = piped(bench, "events").stdout.splitlines()
    assert table[0].split() == ["AGE", "API", "KIND", "MESSAGE"]
    assert any(line.split()[1:4] == [LONG, "deploy", "version"] for line in table), table
    later = time.time()
    time.sleep(1.2)
    assert bench.json("events", "--since", repr(later)) == []
    assert bench.json("events", "--since", "1h")  # durations back from now
    assert bench.json("events", "--since", "2000-01-01T00:00:00Z")
    wrong = bench.run("events", "--since", "soonish", check=False)
    assert wrong.returncode == 2 and "10m, 1h30m, 2d" in wrong.stderr


def test_a_failed_rollout_shows_its_output_once_whole(bench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "broken", "name: broken\nruntime: process\ncompute: {cpu: 0.05}\n", """
        class Predictor:
            def __init__(self, config):
                print("\x1b[2Jspoofed screen", flush=True)  # a replica's output may not drive the terminal
                raise RuntimeError("weights file is corrupt")

            def predict(self, payload):
                return payload
    """)
    result = bench.run("deploy", str(project), check=False)
    assert result.returncode == 1
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert error.endswith("Fix the predictor and deploy again; its output:")
    shown = [line for line in result.stderr.splitlines() if line.startswith("  │ ")]
    assert sum("Traceback (most recent call last)" in line for line in shown) == 1, shown
    assert shown[0].startswith("  │ workbench:") and "serving api 'broken'" in shown[0]  # from its start
    assert shown[-1] == "  │ workbench: predictor failed to load: RuntimeError: weights file is corrupt"
    assert "\x1b" not in result.stderr and "│ \\x1b[2Jspoofed screen" in result.stderr
    events = piped(bench, "events", "--api", "broken").stdout
    assert "Fix the predictor and deploy again: its output:" in events
    assert "│ RuntimeError: weights file is corrupt" in events  # the output the event speaks of


def test_logs_name_each_replica_once_and_take_timestamps_and_since(bench: Workbench,
                                                                   tmp_path: Path) -> None:
    project = write_project(tmp_path / "pair", "name: pair\nruntime: process\nreplicas: 2\n"
                            "compute: {cpu: 0.05}\n", PREDICTOR)
    try:
        deployed = bench.run("deploy", str(project))
        assert "pair: pair:" not in deployed.stderr and "pair: built pair-" in deployed.stderr
        lines = bench.run("logs", "pair").stdout.splitlines()
        serving = [line for line in lines if "serving api 'pair'" in line]
        assert len(serving) == 2, lines
        for line in serving:
            replica = line[1:9]
            assert re.match(rf"^\[{replica}\] workbench: serving api 'pair'", line), line  # once
        stamped = bench.run("logs", "pair", "-t").stdout.splitlines()
        assert all(re.match(r"^\[[0-9a-f]{8}\] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", line)
                   for line in stamped), stamped
        assert bench.run("logs", "pair", "--since", "2999-01-01T00:00:00Z").stdout == ""
        assert "greeter loaded" in bench.run("logs", "pair", "--since", "1h").stdout
        wrong = bench.run("logs", "pair", "--since", "yesterday", check=False)
        assert wrong.returncode == 2 and "is not a duration" in wrong.stderr
    finally:
        bench.run("delete", "pair", check=False)


def test_image_prune_keeps_the_last_versions_of_live_apis(bench: Workbench, tmp_path: Path) -> None:
    project = write_project(tmp_path / "versions", "name: versions\nruntime: process\ncompute: {cpu: 0.05}\n",
                            PREDICTOR)
    gone = write_project(tmp_path / "gone", "name: gone\nruntime: process\ncompute: {cpu: 0.05}\n",
                         PREDICTOR + "# gone\n")
    bundles = bench.agent_home / "bundles"
    try:
        built: list[str] = []
        for version in range(3):  # three versions, three bundles (the code changes each time)
            (project / "predictor.py").write_text(PREDICTOR + f"# version {version}\n")
            result = json.loads(bench.run("deploy", str(project), "--json").stdout)
            built.append(result[0]["artifact"])
        bench.run("deploy", str(gone))
        gone_artifact = bench.json("get", "gone")["artifact"]  # type: ignore[index]
        bench.run("delete", "gone")
        assert all((bundles / name).is_dir() for name in [*built, gone_artifact])

        dry = json.loads(bench.run("image", "prune", "--dry-run", "--json").stdout)
        verdicts = {i["artifact"]: i["why"] for i in dry["removed"]}
        assert verdicts[built[0]] == "older than the last 2 versions"
        assert verdicts[gone_artifact] == "its API is not deployed"
        deployed = {a["name"] for a in bench.json("get")}  # type: ignore[union-attr]
        assert all(i["api"] not in deployed or i["artifact"] == built[0] for i in dry["removed"]), dry
        assert all((bundles / name).is_dir() for name in [*built, gone_artifact])  # nothing removed

        pruned = bench.run("image", "prune")
        assert f"✓ removed {len(verdicts)} image(s)" in pruned.stdout and built[0] in pruned.stdout
        assert not (bundles / built[0]).exists() and not (bundles / gone_artifact).exists()
        assert (bundles / built[1]).is_dir() and (bundles / built[2]).is_dir()
        one = json.loads(bench.run("image", "prune", "--keep", "1", "--json").stdout)
        assert [i["artifact"] for i in one["removed"]] == [built[1]]
        assert (bundles / built[2]).is_dir()  # the running version stays
        assert bench.json("predict", "versions", '"x"')["status"] == 200  # type: ignore[index]
        listed = [a["name"] for a in bench.json("get")]  # type: ignore[union-attr]
        assert LONG in listed and (bundles / bench.json("get", LONG)["artifact"]).is_dir()  # type: ignore[index]
    finally:
        bench.run("delete", "versions", check=False)


# -- a stopped controller (item 17): last, it stops the module's controller -------------------------
def test_get_after_controller_stop_says_what_still_runs(bench: Workbench) -> None:
    stopped = bench.run("controller", "stop")
    assert "controller stopped; the local agent still runs 1 replica(s)" in stopped.stdout
    result = bench.run("get", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert (f"error: the controller is stopped; the local agent still runs 1 replica(s) ({LONG})"
            in result.stderr)
    answer = json.loads(bench.run("get", "--json", check=False).stdout)
    assert answer["replicas"] == 1 and answer["apis"] == [LONG]
