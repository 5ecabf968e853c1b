"""gateway.yaml validation, routing rules and the SQLite queue's state machine (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import MedsegConfigError
from medseg.gateway.config import load_gateway_config
from medseg.gateway.queue import JobQueue, SeriesInfo
from medseg.gateway.router import route_series

from tests.conftest import run_cli

BASE = "work_dir: work\nallowed_callers: [{ae_title: ORTHANC, host: 127.0.0.1}]\nroutes: [{name: liver, model: models/liver}]\n"


def load(tmp_path: Path, text: str):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return load_gateway_config(path)


def test_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "destinations: [ORTHANC@10.1.2.3:4242, 'https://pacs/dicom-web/']\n")
    assert config.series_timeout_s == 10 and config.concurrency == 1 and not config.log_phi
    assert config.http.host == "127.0.0.1" and config.unmatched == "drop"
    assert config.work_dir == tmp_path / "work" and config.routes[0].model == tmp_path / "models" / "liver"
    dimse, web = config.destinations
    assert dimse.dimse() == ("ORTHANC", "10.1.2.3", 4242) and not dimse.is_dicomweb
    assert web.is_dicomweb and web.target == "https://pacs/dicom-web"


@pytest.mark.parametrize("extra, message", [
    ("series_timout_s: 3\n", "series_timout_s: unknown key (did you mean 'series_timeout_s'?)"),
    ("destinations: [ORTHANC@host]\n", "expected AE@host:port (DIMSE) or an http(s):// DICOMweb URL"),
    ("ae_title: A_TITLE_FAR_TOO_LONG\n", "ae_title: Value error, an AE title has 1 to 16 characters"),
    ("concurrency: 0\n", "concurrency: Input should be greater than or equal to 1"),
    ("dicomweb_receiver: {cert: a.pem}\n", "dicomweb_receiver: Value error, give both cert and key (HTTPS) or neither"),
    ("dicomweb_receiver: {prot: 80}\n", "dicomweb_receiver.prot: unknown key"),
])
def test_config_errors_are_one_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(MedsegConfigError) as info:
        load(tmp_path, BASE + extra)
    assert message in str(info.value) and str(info.value).startswith(str(tmp_path / "gateway.yaml"))
    assert "\n" not in str(info.value)


def test_config_needs_an_allow_list(tmp_path: Path) -> None:
    with pytest.raises(MedsegConfigError, match="allowed_callers is empty"):
        load(tmp_path, "work_dir: w\nroutes: [{name: a, model: m}]\n")
    assert load(tmp_path, "work_dir: w\nroutes: [{name: a, model: m}]\nallow_any_caller: true\n").allow_any_caller


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(BASE + "port: 70000\n")
    result = run_cli("gateway", "--config", str(tmp_path / "gateway.yaml"))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "port: Input should be less than 65536" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("gateway", "--config", str(tmp_path / "gateway.yaml").replace(".yaml", "-missing.yaml"))
    assert result.returncode == 1 and "gateway config not found" in result.stderr


def series(uid: str = "1.2.3", modality: str = "CT", n: int = 40, description: str = "ABDOMEN 5mm", body_part: str = "ABDOMEN") -> SeriesInfo:
    return SeriesInfo(uid, "1.2", modality, body_part, description, "1.2.840.10008.5.1.4.1.1.2", "ORTHANC", Path("/x") / uid, n)


def test_routing_first_matching_rule_wins(tmp_path: Path) -> None:
    config = load(tmp_path, "work_dir: w\nallow_any_caller: true\nroutes:\n"
                  "  - {name: thin, model: a, modality: CT, series_description: '\\b(1|2)mm', min_slices: 100}\n"
                  "  - {name: abdomen, model: b, modality: ct, body_part: abdomen, max_slices: 400}\n"
                  "  - {name: brain-mr, model: c, modality: MR, series_description: 't1|flair'}\n")
    name = lambda s: (r.name if (r := route_series(config.routes, s)) else None)  # noqa: E731
    assert name(series(description="Abdomen 1mm", n=300)) == "thin"
    assert name(series(description="Abdomen 1mm", n=50)) == "abdomen"  # too few slices for "thin"
    assert name(series(n=500)) is None  # above max_slices, and not thin
    assert name(series(modality="MR", description="AX FLAIR", body_part="")) == "brain-mr"
    assert name(series(modality="MR", description="DWI", body_part="")) is None


def test_queue_jobs_are_unique_per_series_and_model_and_survive_a_crash(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "queue.sqlite")
    info = series()
    assert queue.add_instance(info, "1.2.3.1", tmp_path / "a.dcm", now=100.0)
    assert not queue.add_instance(info, "1.2.3.2", tmp_path / "b.dcm", now=101.0)
    assert queue.add_instance(info, "1.2.3.2", tmp_path / "b.dcm", now=102.0) is False  # the same instance again: one row
    assert queue.idle_series(10, now=105.0) == []
    (idle,) = queue.idle_series(10, now=112.5)
    assert idle.n_instances == 2
    job_id = queue.add_job(idle, "/models/a", "a")
    assert job_id is not None and queue.add_job(idle, "/models/a", "a") is None  # idempotent on (series, model)
    assert queue.idle_series(10, now=200.0) == []  # closed
    (job,) = queue.claim(4)
    assert job.state == "running" and job.attempts == 1 and queue.claim(4) == []
    queue.update(job.id, state="sending", seg_path="/w/seg.dcm", sent=["A@h:1"])
    queue.close()

    queue = JobQueue(tmp_path / "queue.sqlite")  # a restart after a crash
    assert queue.recover() == 1
    (job,) = queue.claim(1)
    assert (job.state, job.attempts, job.seg_path, job.sent) == ("running", 2, "/w/seg.dcm", ("A@h:1",))
    queue.update(job.id, state="pending", next_attempt=10**12, last_error="down")
    assert queue.claim(1) == []  # not due yet
    assert queue.counts() == {"pending": 1, "running": 0, "sending": 0, "done": 0, "failed": 0}
    with pytest.raises(ValueError):
        queue.update(job.id, state="lost")


def test_queue_trigger_closes_a_series_now(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "queue.sqlite")
    queue.add_instance(series("9.9"), "9.9.1", tmp_path / "a.dcm")
    assert queue.idle_series(3600) == []
    assert queue.trigger("9.9") and not queue.trigger("1.1")
    assert [s.series_uid for s in queue.idle_series(3600)] == ["9.9"]


def test_the_readme_example_config_validates(tmp_path: Path) -> None:
    """README "Connecting medseg to a PACS": its gateway.yaml is a valid config, STOW-RS receiver and HTTPS CA included."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Connecting medseg to a PACS"):]
    example = section[section.index("```yaml\n") + 8: section.index("```", section.index("```yaml\n") + 8)]
    config = load(tmp_path, example)
    assert config.dicomweb_receiver is not None and config.dicomweb_receiver.port == 8043
    assert config.dicomweb_receiver.cert == tmp_path / "medseg.pem" and config.dicomweb_receiver.token_env == "MEDSEG_STOW_TOKEN"
    assert [d.is_dicomweb for d in config.destinations] == [False, True]
