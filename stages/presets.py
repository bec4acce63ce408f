"""Filter presets: named stage lists in `configs/filters/NAME.yaml` (read from the installed
package), used in a job file as

    stages:
      - preset: {name: system}
      - exact_dedupe

A preset expands, in place, into its stages with their options, before the stages are built.
"""

from __future__ import annotations

import configs
from pipeline.config import ConfigError, StageConfig

FOLDER = "filters"


def known_presets() -> list[str]:
    return configs.names(FOLDER)


def load_preset(name: str) -> list[StageConfig]:
    data = configs.read_yaml_mapping(configs.named(name, FOLDER, "filter preset"), "filter preset", "`stages:`")
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
