"""Every hostile input of issue 10 (section 1), sent to the real web process.

The stack: ``manage.py serve --no-worker`` (daphne with the body limits in its HTTP
layer, the ASGI body limit, Django) on a fresh PostgreSQL database and a Redis db of
its own (``benchmarks/_stack.py``). A member logs in through the login form and
posts each input as a browser would (session cookie, CSRF token from the form page,
``HX-Request`` as htmx sends it); the 200 MiB bodies are sent anonymously on a raw
socket, once with ``Content-Length`` and once chunked.

For each input: the HTTP status, the message shown (the field error, or the 413's
text), the web process's peak resident memory during the request (``VmHWM`` after
writing 5 to ``/proc/PID/clear_refs``), the growth of the data folder (uploads,
checkpoints, registry) and of the database (task sets, versions, runs, meta-models,
adaptations). An input counts as refused when the answer is a 4xx, or a form shown
again with an error, and nothing was written. The baseline, measured in the same
run: the peak of an ordinary request (a member opening the launch form).

    .venv/bin/python benchmarks/hostile_inputs.py

Last line: ``RESULT hostile_refused=<n>/<total> web_peak_mb=<max> disk_written_mb=<total>
server_errors=<n> baseline_peak_mb=<peak of the ordinary request>``.
Targets (issue 10): every input refused, web_peak_mb < 400, disk_written_mb < 1,
server_errors=0.
"""

from __future__ import annotations

import html
import io
import json
import re
import socket
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stack import (  # noqa: E402
    BenchStack,
    Proc,
    bench_member,
    bench_stack,
    free_port,
    setup_django,
    spawn,
    wait_http_ready,
)

MIB = 1024 * 1024
PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory's
HOSTILE_BODY = 200 * MIB


@dataclass
class Outcome:
    name: str
    status: int
    message: str
    peak_mb: float
    disk_bytes: int
    rows: int

    @property
    def refused(self) -> bool:
        shown_error = self.status == 200 and bool(self.message)
        return (400 <= self.status < 500 or shown_error) and self.disk_bytes <= 0 and self.rows == 0


# -- the hostile payloads ---------------------------------------------------------------


def _png(size: tuple[int, int], value: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: Iterator[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def many_pngs_zip(count: int = 6000) -> bytes:
    """The issue's task-set zip: 6,000 blank 256x256 PNGs, about 1 MB packed."""
    one = _png((256, 256))
    return _zip((f"c{i % 10}/{i}.png", one) for i in range(count))


def wide_cell_csv() -> bytes:
    """The issue's CSV: 125,000 ordinary rows and one 2,000-character cell (1.4 MB)."""
    lines = ["task,target,x1"] + [f"t{i % 7},c{i % 2},{i % 13}.25" for i in range(125_000)]
    return ("\n".join([*lines, "t1,c0," + "9" * 2000]) + "\n").encode()


def adaptation_zip() -> bytes:
    """The issue's adaptation upload: 600 blank 256x256 PNGs in 3 classes, stored (not
    deflated, as ``zipfile`` does by default): 314 KiB that decode to 39 M pixels."""
    one = _png((256, 256))
    return _zip(((f"c{i % 3}/{i}.png", one) for i in range(600)), zipfile.ZIP_STORED)


def deep_safetensors(depth: int = 200_000) -> bytes:
    """A safetensors file whose JSON header nests ``depth`` lists deep."""
    header = b"[" * depth + b"]" * depth
    return struct.pack("<Q", len(header)) + header + bytes(8)


# -- the web process and a browser-like member ------------------------------------------


def start_web(stack: BenchStack) -> tuple[Proc, str]:
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker", "--no-static"]
    web = spawn("web", argv, env=stack.env, log_dir=stack.work / "logs")
    stack.procs.append(web)
    base = f"http://127.0.0.1:{port}"
    wait_http_ready(web, base)
    return web, base


class Member:
    """A logged-in browser session: cookies, and a CSRF token read from each form page."""

    def __init__(self, base: str, username: str):
        import requests

        self.base = base
        self.session = requests.Session()
        token = self._token("/accounts/login/")
        answer = self.session.post(
            base + "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": base + "/accounts/login/"},
            allow_redirects=False,
        )
        assert answer.status_code == 302, f"login failed: {answer.status_code}"

    def _token(self, path: str) -> str:
        page = self.session.get(self.base + path)
        assert page.status_code == 200, (path, page.status_code)
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        return found.group(1) if found else self.session.cookies["csrftoken"]

    def get(self, path: str) -> tuple[int, str]:
        answer = self.session.get(self.base + path)
        return answer.status_code, ""

    def post_form(self, path: str, data: dict, files: dict | None = None) -> tuple[int, str]:
        token = self._token(path)
        answer = self.session.post(
            self.base + path,
            data={**data, "csrfmiddlewaretoken": token},
            files=files,
            headers={"HX-Request": "true", "Referer": self.base + path},
            allow_redirects=False,
        )
        return answer.status_code, _shown_error(answer.text)


def _shown_error(page: str) -> str:
    """The first error message a page shows (a field's or the form's), as text."""
    found = re.search(r'<ul class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else ""


def post_anonymous(port: int, *, chunked: bool) -> tuple[int, str]:
    """POST 200 MiB to the login page without a session, on a raw socket."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HOSTILE_BODY}"
    head = (
        f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()
    block = b"x" * MIB
    frame = b"%x\r\n" % len(block) + block + b"\r\n" if chunked else block
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(HOSTILE_BODY // MIB):
                sock.sendall(frame)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the rest is never read
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    body = answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
    return status, " ".join(re.sub(r"<[^>]+>", " ", body).split())[:160]


# -- measuring --------------------------------------------------------------------------


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def folder_bytes(folder: Path) -> int:
    """Bytes under the data folder, the processes' logs aside."""
    logs = folder / "logs"
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and logs not in p.parents)


def row_count() -> int:
    from apps.adaptations.models import Adaptation, AdaptedModel
    from apps.experiments.models import Run
    from apps.registry.models import MetaModel
    from apps.tasksets.models import TaskSet, TaskSetVersion

    models = (TaskSet, TaskSetVersion, Run, MetaModel, Adaptation, AdaptedModel)
    return sum(model.objects.count() for model in models)


def last_exception(log: str) -> str:
    """The last ``SomeError: message`` line of a traceback in ``log``."""
    found = re.findall(r"^(\w+(?:Error|Exception)\b.*)$", log, re.M)
    return found[-1][:120] if found else "(no traceback)"


def measure(name: str, web: Proc, data_dir: Path, send: Callable[[], tuple[int, str]]) -> Outcome:
    disk, rows = folder_bytes(data_dir), row_count()
    reset_peak(web.pid)
    log_start = len(web.log())
    status, message = send()
    if status >= 500 and not message:
        message = "server error; the log says: " + last_exception(web.log()[log_start:])
    return Outcome(
        name=name,
        status=status,
        message=message,
        peak_mb=peak_mb(web.pid),
        disk_bytes=folder_bytes(data_dir) - disk,
        rows=row_count() - rows,
    )


# -- the run ----------------------------------------------------------------------------


def make_world() -> dict:
    """A team with its member, an experiment, sinusoid and glyphs task sets, and a digits
    ProtoNets meta-model to adapt (its checkpoint record is enough for the form)."""
    from apps.experiments.models import Experiment
    from tests.adaptations.test_services import write_checkpoint_json
    from tests.factories import MetaModelFactory, TaskSetVersionFactory

    team, user = bench_member("bench", username="bench")
    digits = TaskSetVersionFactory(taskset__team=team, taskset__family="digits", taskset__name="Digits")
    meta_model = MetaModelFactory(experiment__team=team, taskset_version=digits, algorithm="protonet")
    write_checkpoint_json(
        meta_model, family="digits", kind="classification", input_shape=[64], ways=3, algorithm="protonet"
    )
    return {
        "user": user,
        "experiment": Experiment.objects.create(team=team, name="Hostile", created_by=user),
        "sines": TaskSetVersionFactory(taskset__team=team, taskset__name="Sines"),
        "glyphs": TaskSetVersionFactory(taskset__team=team, taskset__family="glyphs", taskset__name="Glyphs"),
        "meta_model": meta_model,
    }


def launch_form(world: dict, taskset: str, **changes: str) -> dict[str, str]:
    """The launch form's fields for a MAML run (tests/experiments/test_run_budget.py's)."""
    data = {
        "experiment": world["experiment"].pk, "algorithm": "maml", "taskset": world[taskset].taskset_id,
        "meta_lr": "0.001", "meta_batch": "25", "shots": "5", "ways": "5", "query": "10",
        "iterations": "10", "eval_interval": "5", "seed": "1", "device": "cpu", "queue": "cpu",
        "eval_tasks": "5", "checkpoint_interval": "5", "hidden": "40,40", "conv_filters": "64",
        "inner_lr": "0.01", "inner_steps": "1",
    }  # fmt: skip
    data.update(changes)
    return data


def inputs(member: Member, world: dict, port: int) -> list[tuple[str, Callable[[], tuple[int, str]]]]:
    from tests.tasksets.test_views import TABLE_POST

    table = {**TABLE_POST, "params-max_bytes": "2000000000"}  # the user-settable cap at its top
    tasksets, launch = "/t/bench/tasksets/new/", "/t/bench/runs/new/"
    adapt = f"/models/{world['meta_model'].pk}/adapt/"
    zip_6000, csv_wide, adapt_zip = many_pngs_zip(), wide_cell_csv(), adaptation_zip()
    registry = {
        "name": "deep", "experiment": world["experiment"].pk, "taskset_version": world["sines"].pk,
        "config": json.dumps({"algorithm": "maml", "hidden": [8, 8]}), "description": "",
    }  # fmt: skip
    adaptation = {"target": "custom", "task_index": "4", "steps": "10", "lr": "0.01", "queue": "cpu"}
    return [
        (
            f"task-set zip, 6,000 PNGs 256x256 ({len(zip_6000) / MIB:.1f} MiB)",
            lambda: member.post_form(tasksets, table, {"data_file": ("many.zip", zip_6000)}),
        ),
        (
            f"task-set CSV, one 2,000-char cell ({len(csv_wide) / MIB:.1f} MiB)",
            lambda: member.post_form(tasksets, table, {"data_file": ("wide.csv", csv_wide)}),
        ),
        (
            f"adaptation zip, 600 PNGs 256x256 ({len(adapt_zip) / 1024:.0f} KiB)",
            lambda: member.post_form(adapt, adaptation, {"support_images": ("support.zip", adapt_zip)}),
        ),
        ("anonymous POST 200 MiB, Content-Length", lambda: post_anonymous(port, chunked=False)),
        ("anonymous POST 200 MiB, chunked", lambda: post_anonymous(port, chunked=True)),
        (
            "safetensors, JSON header 200,000 deep",
            lambda: member.post_form(
                "/t/bench/models/upload/",
                registry,
                {"weights_file": ("deep.safetensors", deep_safetensors())},
            ),
        ),
        (
            "run: sinusoid hidden=[4096]*8 meta_batch=1024 query=10000",
            lambda: member.post_form(
                launch,
                launch_form(world, "sines", hidden=",".join(["4096"] * 8), meta_batch="1024", query="10000"),
            ),
        ),
        (
            "run: glyphs conv_filters=512 query=10000",
            lambda: member.post_form(launch, launch_form(world, "glyphs", conv_filters="512", query="10000")),
        ),
    ]


def report(baseline: Outcome, outcomes: list[Outcome]) -> None:
    print(f"{'input':<60} {'HTTP':>4} {'peak MB':>8} {'disk B':>7} {'rows':>4}  message shown")
    for o in [baseline, *outcomes]:
        print(
            f"{o.name:<60} {o.status:>4} {o.peak_mb:>8.1f} {o.disk_bytes:>7} {o.rows:>4}  {o.message[:150]}"
        )
    refused = sum(o.refused for o in outcomes)
    web_peak = max(o.peak_mb for o in outcomes)
    written = sum(max(o.disk_bytes, 0) for o in outcomes) / MIB
    errors = sum(o.status >= 500 or o.status == 0 for o in outcomes)
    print(f"peak over inputs / ordinary request: {web_peak / baseline.peak_mb:.2f}x")
    print(
        f"RESULT hostile_refused={refused}/{len(outcomes)} web_peak_mb={web_peak:.1f} "
        f"disk_written_mb={written:.3f} server_errors={errors} baseline_peak_mb={baseline.peak_mb:.1f}"
    )


def main() -> None:
    with bench_stack("hostile") as stack:
        setup_django(stack.env, migrate=True)
        world = make_world()
        web, base = start_web(stack)
        member = Member(base, world["user"].username)
        port = int(base.rsplit(":", 1)[1])
        baseline = measure(
            "baseline: a member opens the launch form",
            web,
            stack.work,
            lambda: member.get("/t/bench/runs/new/"),
        )
        outcomes = [measure(name, web, stack.work, send) for name, send in inputs(member, world, port)]
        assert web.alive(), web.tail()
        report(baseline, outcomes)
        stack.ok = True


if __name__ == "__main__":
    main()
