"""The console's parts without a server: the multipart upload stream, the progress hub, the
SVG pictures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownstream.background import FINISHED_KEPT_SECONDS, ProgressHub
from ownstream.console import charts
from ownstream.errors import InvalidRequest, UploadTooLarge
from ownstream.owner.uploads import FormUpload, Upload, safe_name

BOUNDARY = "x-boundary"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def feed(form: FormUpload, body: bytes, size: int) -> None:
    for start in range(0, len(body), size):
        form.write(body[start : start + size])
    form.finish()


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_a_form_upload_streams_its_file_whatever_the_chunking(tmp_path: Path, chunk: int) -> None:
    content = bytes(range(256)) * 40
    seen: list[dict[str, str]] = []

    def open_file(fields: dict[str, str], filename: str) -> Upload:
        seen.append(fields)
        return Upload(tmp_path, filename, 1 << 20)

    form = FormUpload(f"multipart/form-data; boundary={BOUNDARY}", "archive", open_file)
    feed(form, multipart(("csrf_token", None, b"t0k"), ("archive", "../../etc/My Data!.zip",
                                                         content), ("after", None, b"x")), chunk)
    assert seen == [{"csrf_token": "t0k"}]  # the fields sent before the file, at its start
    assert form.fields == {"csrf_token": "t0k", "after": "x"}
    assert form.upload is not None
    artifact = form.upload.artifact()
    assert artifact.name == "My Data_.zip" and artifact.size_bytes == len(content)
    path = Path(artifact.path)
    assert path.read_bytes() == content and path.stat().st_mode & 0o777 == 0o600
    assert path.parent.parent == tmp_path / "uploads"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    form.discard()
    assert not path.parent.exists()


def test_a_form_upload_refuses_what_it_must(tmp_path: Path) -> None:
    def refuse(fields: dict[str, str], filename: str) -> Upload:
        raise InvalidRequest("no token")

    with pytest.raises(InvalidRequest):
        FormUpload("application/json", "archive", refuse)
    form = FormUpload(f"multipart/form-data; boundary={BOUNDARY}", "archive", refuse)
    with pytest.raises(InvalidRequest, match="no token"):
        feed(form, multipart(("archive", "a.zip", b"data")), 1024)
    small = FormUpload(f"multipart/form-data; boundary={BOUNDARY}", "archive",
                       lambda fields, name: Upload(tmp_path, name, 10))
    with pytest.raises(UploadTooLarge):
        feed(small, multipart(("archive", "a.zip", b"x" * 11)), 4)
    long_field = FormUpload(f"multipart/form-data; boundary={BOUNDARY}", "archive", refuse)
    with pytest.raises(InvalidRequest, match="too long"):
        feed(long_field, multipart(("connector", None, b"k" * 5000)), 512)


def test_upload_names_keep_only_the_last_harmless_component() -> None:
    assert safe_name("C:\\Users\\me\\takeout.zip") == "takeout.zip"
    assert safe_name("../..") == "upload" and safe_name(None) == "upload"
    assert safe_name("a/b/ünïcode name.mbox") == "_n_code name.mbox"


def test_the_progress_hub_keeps_the_latest_event_and_forgets_old_work() -> None:
    now = [0.0]
    hub = ProgressHub(clock=lambda: now[0])
    assert hub.snapshot("run_1") is None
    hub.update("run_1", {"records": 1})  # not begun here: ignored
    assert hub.snapshot("run_1") is None
    hub.begin("run_1")
    hub.update("run_1", {"records": 1})
    hub.update("run_1", {"records": 2})
    snapshot = hub.snapshot("run_1")
    assert snapshot is not None and snapshot.version == 2 and snapshot.progress == {"records": 2}
    hub.finish("run_1", {"status": "succeeded"})
    hub.update("run_1", {"records": 3})  # after the end: ignored
    done = hub.snapshot("run_1")
    assert done is not None and done.version == 3 and done.finished == {"status": "succeeded"}
    now[0] = FINISHED_KEPT_SECONDS + 1
    hub.begin("run_2")
    assert hub.snapshot("run_1") is None and hub.snapshot("run_2") is not None


def test_pictures_carry_their_numbers_as_text() -> None:
    chart = charts.activity(
        "a", "plays", ["2025-01-31", "2025-02-01"],
        [charts.Series("Alice <A>", {"2025-01-31": 3}), charts.Series("Bob", {"2025-02-01": 5})],
    )
    assert "Alice &lt;A&gt;: 3" in chart.svg and "2025-01-31 · Alice &lt;A&gt;: 3" in chart.svg
    assert "8 records over 2 days" in chart.svg and "2025-02" in chart.svg
    assert chart.legend == [("Alice <A>", charts.colour(0)), ("Bob", charts.colour(1))]
    line = charts.timeline("t", "coverage", [
        charts.Span("api · plays", "2024-06-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z"),
        charts.Span("export · profile", None, None, 1),
    ])
    assert "api · plays: 2024-06-01 to 2025-02-01" in line and ">2025</text>" in line
    assert "no dated records" in line and "style=" not in line
