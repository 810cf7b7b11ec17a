"""The drill-down shows images from the image root or beside the results file, never a file a
samples row points at elsewhere on the server's disk."""

from __future__ import annotations

from PIL import Image

from leaderboard.drilldown import IMAGE_ROOT_ENV, resolve_image


def test_images_resolve_only_inside_the_allowed_folders(tmp_path, monkeypatch):
    results, images, outside = tmp_path / "results", tmp_path / "images", tmp_path / "secret"
    for folder in (results, images / "files", outside):
        folder.mkdir(parents=True)
    for path in (results / "beside.png", images / "files" / "a.png", outside / "s.png"):
        Image.new("L", (8, 8)).save(path)
    (results / "link.png").symlink_to(outside / "s.png")
    monkeypatch.delenv(IMAGE_ROOT_ENV, raising=False)
    assert resolve_image("beside.png", results) == (results / "beside.png").resolve()
    assert resolve_image("files/a.png", results) is None  # no image root set
    monkeypatch.setenv(IMAGE_ROOT_ENV, str(images))
    assert resolve_image("files/a.png", results) == (images / "files" / "a.png").resolve()
    for hostile in (
        str(outside / "s.png"),
        "../secret/s.png",
        "../../secret/s.png",
        "link.png",
        "/etc/hostname",
    ):
        assert resolve_image(hostile, results) is None, hostile
