"""The README's "Python API" code blocks run as written (in a folder whose pipelines/demo.yaml is a tiny copy)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_PIPELINE

README = Path(__file__).resolve().parents[1] / "README.md"


def api_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_the_api_examples() -> None:
    code = "\n".join(api_blocks())
    for name in ("medseg.train(", "medseg.load_model(", "model.predict(", "result.save(", "medseg.evaluate("):
        assert name in code


def test_readme_api_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = yaml.safe_load(yaml.safe_dump(TINY_PIPELINE))
    pipeline["name"] = "demo"
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "demo.yaml").write_text(yaml.safe_dump(pipeline))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for block in api_blocks():
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own code)
    assert (tmp_path / "mask.nii.gz").is_file() and (tmp_path / "runs" / "demo" / "model" / "medseg.json").is_file()
    assert not [w for w in caught if "no affine" in str(w.message)]  # every array came with its affine


def test_an_array_without_affine_is_taken_as_1mm_ras_with_one_warning(tiny_model: Path) -> None:
    import numpy as np

    import medseg
    from medseg.errors import MedsegInputError

    model = medseg.load_model(tiny_model, device="cpu")
    volume = np.zeros((20, 18, 10), np.float32)
    with pytest.warns(UserWarning, match="1 mm voxels in RAS"):
        result = model.predict(volume)
    assert result.labels.shape == volume.shape and np.array_equal(result.affine, np.eye(4))
    with pytest.raises(MedsegInputError, match="3D array"):
        model.predict(np.zeros((4, 4)))
