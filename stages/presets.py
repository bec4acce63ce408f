"""Filter presets: named stage lists in `configs/filters/NAME.yaml`, used in a job file as

    stages:
      - preset: {name: system}
      - exact_dedupe

A preset expands, in place, into its stages with their options, before the stages are built.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import ConfigError, StageConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "filters"


def known_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []


def load_preset(name: str) -> list[StageConfig]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no filter preset {name!r}; known: {', '.join(known_presets()) or 'none'}")
    data = yaml.safe_load(path.read_text()) or {}
    stages = []
    for item in data.get("stages", []):
        if isinstance(item, str):
            stages.append(StageConfig(name=item))
        else:
            (stage, options), = item.items()
            stages.append(StageConfig(name=stage, options=options or {}))
    return stages


def expand_presets(stages: list[StageConfig]) -> list[StageConfig]:
    out = []
    for i, stage in enumerate(stages):
        if stage.name != "preset":
            out.append(stage)
            continue
        unknown = set(stage.options) - {"name"}
        if "name" not in stage.options or unknown:
            raise ConfigError(f"stages[{i}] (preset): write `- preset: {{name: NAME}}`; known: "
                              f"{', '.join(known_presets())}")
        out += load_preset(stage.options["name"])
    return out
