"""Bad experiment edits while traffic flows: nothing the edits do may cost a request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from router.local.processes import poll_until
from tests.chaos.harness import Load, figure, share_2xx
from tests.conftest import GatewayFactory, canary_yaml, write_experiment


def test_bad_yaml_edits_under_load_cost_nothing(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    good = canary_yaml(workers, {"v1": 50, "v2": 50}, name="live")
    path = write_experiment(tmp_path, good, "live.yaml")
    gw = start_gateway(tmp_path, TURNOUT_EXPERIMENT_DELETE_GRACE="3", TURNOUT_ACCESS_LOG="false")

    def refused() -> dict[str, str]:
        answer: dict[str, str] = httpx.get(f"{gw.url}/experiments").json()["refused"]
        return answer

    def seen(name: str) -> None:
        poll_until(lambda: any(name in f for f in refused()), 60, what=f"{name} refused")

    version = httpx.get(f"{gw.url}/experiments").json()["experiments"][0]["config_version"]
    lines = "".join(f"  - {{a: {i}}}\n" for i in range(6_000))
    edits: list[tuple[str, Callable[[], object]]] = [  # (the file it refuses, the edit)
        (
            "live.yaml",
            lambda: write_experiment(tmp_path, "name: live\npolicy: [oops\n", "live.yaml"),
        ),
        (
            "live.yaml",
            lambda: write_experiment(tmp_path, good.replace("v2: 50", "v2: 60"), "live.yaml"),
        ),
        ("usurper.yaml", lambda: write_experiment(tmp_path, usurper, "usurper.yaml")),
        ("big.yaml", lambda: (tmp_path / "big.yaml").write_bytes(b"# x\n" * 500_000)),
        ("list.yaml", lambda: (tmp_path / "list.yaml").write_text("items:\n" + lines)),
    ]
    usurper = canary_yaml(workers, {"v1": 100}, name="usurper")
    with Load(gw.url, concurrency=4) as load:
        load.wait_for(50)
        for name, edit in edits:
            edit()
            seen(name)
            load.wait_for(30)
        write_experiment(tmp_path, good, "live.yaml")
        path.unlink()  # a deploy that removes, then copies
        load.wait_for(30)
        write_experiment(tmp_path, good, "live.yaml")
        load.wait_for(50)
    expected = {"usurper.yaml", "big.yaml", "list.yaml"}
    poll_until(lambda: {Path(f).name for f in refused()} == expected, 30, what="live.yaml back")
    experiments = {e["name"]: e for e in httpx.get(f"{gw.url}/experiments").json()["experiments"]}
    figure("bad YAML edits under load", load.samples, refused_files=len(refused()))
    assert share_2xx(load.samples) == 1.0
    assert {s.body.get("experiment") for s in load.samples} == {"live"}
    assert list(experiments) == ["live"] and experiments["live"]["config_version"] == version
