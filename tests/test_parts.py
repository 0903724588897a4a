"""A command that needs a part the demo profile did not install says so in one line (issue 19).

``bash scripts/demo`` installs only what the demo runs; the parts here are hidden
from the import system (``sys.modules[name] = None`` makes ``import name`` raise
ModuleNotFoundError, as on a demo-only install).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from contracts.parts import AWS, LIVE, NOTES, PARTS, SUPABASE, part_of
from flowbot import cli


def test_each_missing_module_names_its_part() -> None:
    assert part_of("aiortc") is LIVE
    assert part_of("realtime.types") is SUPABASE
    assert part_of("amazon_kclpy") is AWS
    assert part_of("llama_cpp") is NOTES
    assert part_of("numpy") is None and part_of(None) is None
    assert {p.profile for p in PARTS} <= set((Path(__file__).parents[1] / "scripts" / "setup").read_text().split())
    assert LIVE.install == "bash scripts/setup --profile live"


def test_follow_against_supabase_without_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("supabase", "realtime"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setenv("FLOWBOT_STORE", "supabase")
    assert cli.main(["--data-dir", str(tmp_path), "follow", "s1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert (
        "flowbot follow with these settings needs supabase-py" in err
        and "`bash scripts/setup --profile supabase`" in err
    )


def test_the_kinesis_processor_without_the_kcl_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "amazon_kclpy", None)
    assert cli.main(["--data-dir", str(tmp_path), "process", "--source", "kinesis"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"flowbot: {AWS.missing('flowbot process with these settings')}"
    assert err.endswith("run `bash scripts/setup --profile aws`")


def test_notes_by_llama_cpp_without_it_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from control.llm.chat import ProviderError
    from control.llm.local import load_llama

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ProviderError, match=r"needs llama-cpp-python .*`bash scripts/setup --profile notes`"):
        load_llama(tmp_path / "absent.gguf", 512, 1)


def test_an_unrelated_missing_module_is_not_blamed_on_a_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        import flowbot_no_such_module  # noqa: F401

        return 0

    monkeypatch.setattr(cli, "cmd_config", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["config"])
