"""The Python examples in the README and the rule guide run, and their tests pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import REPO

BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("doc", ["README.md", "docs/rules.md", "docs/alerting.md"])
def test_python_examples_run(doc: str) -> None:
    blocks = BLOCK.findall((REPO / doc).read_text(encoding="utf-8"))
    assert blocks, f"{doc} has no python examples"
    namespace: dict[str, object] = {"__name__": f"doc_{Path(doc).stem}"}
    for block in blocks:
        exec(compile(block, doc, "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests, f"{doc} has no example test"
    for fn in tests:
        fn()


def test_dockerfile_is_multi_stage_non_root_and_runs_the_bot() -> None:
    lines = [
        ln.strip()
        for ln in (REPO / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2
    assert all("-slim" in ln for ln in froms)
    for ln in lines:
        if ln.startswith("COPY ") and "--from=" not in ln:
            for src in ln.split()[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    final = lines[lines.index(froms[-1]) :]
    user = next(ln for ln in final if ln.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    assert final.index(user) < final.index(next(ln for ln in final if ln.startswith("ENTRYPOINT")))
    assert 'ENTRYPOINT ["presencebot"]' in final
    assert next(ln for ln in final if ln.startswith("CMD")).startswith('CMD ["run"')


def test_the_fleet_compose_example_is_valid_yaml_and_runs_workers() -> None:
    """Docker cannot run here: the compose file is kept correct by reading it."""
    import yaml

    compose = yaml.safe_load((REPO / "config/examples/fleet-compose.yaml").read_text())
    services = compose["services"]
    workers = [s for name, s in services.items() if name.startswith("worker")]
    assert len(workers) == 3
    for worker in workers:
        assert worker["command"][:2] == ["run", "--config"]
        assert worker["image"] == "presencebot:latest"
        assert worker["stop_grace_period"] == "30s"
        assert any(v.endswith(":ro") for v in worker["volumes"])
    console = services["console"]
    assert console["command"][0] == "console"
    assert all(p.startswith("127.0.0.1:") for p in console["ports"])  # never on a public address
