"""Run by ``torchrun --nproc_per_node=2`` in tests/engine/test_distributed.py: train, then each rank
writes its own copy of the weights (``rank<R>.safetensors``) and the summary (``rank<R>.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_model

from medseg.config import load_pipeline
from medseg.engine import distributed
from medseg.engine.variants import create_trainer


def main(config: str, run_dir: str, epochs: int) -> None:
    trainer = create_trainer(load_pipeline(config), run_dir, device="cpu", epochs=epochs, progress=False)
    summary = trainer.fit()
    out = Path(run_dir)
    r = distributed.rank()
    save_model(trainer.networks["model"], str(out / f"rank{r}.safetensors"))
    (out / f"rank{r}.json").write_text(json.dumps(summary))
    distributed.finish()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
