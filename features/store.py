"""Open the Feast store for a data directory and apply the definitions in ``feature_repo/``."""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from base.config import ConfigError, Settings, read_yaml
from base.paths import DataPaths

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_SERVICE = "persona_v2"  # persona_v1 plus the lifetime features (issue 17)
BEHAVIOUR_VIEW = "user_behaviour"
CATEGORIES_ENV = "PERSONA_FEATURE_CATEGORIES"
"""Set (comma-separated, empty = none) while ``persona`` imports the feature repo: the categories of the
settings in use, so the repo's views follow the configuration the store is opened with."""


def repo_categories() -> list[str]:
    """The categories the feature repo declares affinity features for: those of the settings ``persona``
    imports it with, else ``features.categories`` of ``$PERSONA_CONFIG`` (or ./persona.yaml)."""
    value = os.environ.get(CATEGORIES_ENV)
    if value is not None:
        return [c for c in value.split(",") if c]
    from base.config import load_settings

    return list(load_settings().features.categories)


@contextmanager
def _categories_set(categories: list[str] | None) -> Iterator[None]:
    """:data:`CATEGORIES_ENV` set for the duration of an import of the feature repo (then restored)."""
    if categories is None:
        yield
        return
    before = os.environ.get(CATEGORIES_ENV)
    os.environ[CATEGORIES_ENV] = ",".join(categories)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CATEGORIES_ENV, None)
        else:
            os.environ[CATEGORIES_ENV] = before


def repo_yaml(settings: Settings, profile: str | None = None) -> Path:
    """The feature_store YAML for the settings' profile (or ``profile``)."""
    profile = profile or settings.profile
    name = "feature_store.yaml" if profile == "default" else f"feature_store.{profile}.yaml"
    return settings.feature_repo / name


def open_store(settings: Settings, profile: str | None = None, project: str | None = None) -> "FeatureStore":
    """A FeatureStore whose relative source paths resolve inside the data directory.

    ``project`` overrides the Feast project (default ``$PERSONA_FEAST_PROJECT`` or ``persona``).
    """
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    path = repo_yaml(settings, profile)
    extra = {"PERSONA_DATA_DIR": str(settings.data_dir)}
    if project:
        extra["PERSONA_FEAST_PROJECT"] = project
    raw = read_yaml(path, extra=extra)
    (DataPaths(settings.data_dir).feast).mkdir(parents=True, exist_ok=True)
    try:
        config = RepoConfig(**raw)
    except Exception as e:  # pydantic ValidationError or Feast's own config errors
        raise ConfigError(f"{path}: invalid Feast configuration: {e}") from e
    config.repo_path = settings.data_dir
    return FeatureStore(config=config)


@dataclass
class RepoObjects:
    """Feast objects declared in the feature repo's modules."""

    objects: list[Any]

    def named(self, kind: type) -> list[Any]:
        """Objects of one Feast class."""
        return [o for o in self.objects if isinstance(o, kind)]


def load_definitions(repo_dir: Path, categories: list[str] | None = None) -> RepoObjects:
    """Import every module of the feature repo and collect its Feast objects (like ``feast apply``);
    ``categories``: the configured categories the repo declares affinity features for."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
    from feast.data_source import DataSource

    kinds = (Entity, FeatureView, OnDemandFeatureView, FeatureService, DataSource)
    files = [f for f in sorted(repo_dir.glob("*.py")) if not f.name.startswith(("_", "test_"))]
    for file in files:  # modules of another repo copy with the same names must not be reused
        sys.modules.pop(file.stem, None)
    found: list[Any] = []
    sys.path.insert(0, str(repo_dir))  # definitions may import each other, as with `feast apply`
    try:
        with _categories_set(categories):
            for file in files:
                module = sys.modules.get(file.stem) or _import_file(file)
                for value in vars(module).values():
                    if isinstance(value, kinds) and not any(value is o for o in found):
                        found.append(value)
    finally:
        sys.path.remove(str(repo_dir))
    return RepoObjects(found)


def _import_file(file: Path) -> Any:
    """Import one definitions file under its own name; errors name the file."""
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{file}: cannot import feature definitions")
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(file.stem, None)
        raise ConfigError(f"{file}: error in feature definitions: {e}") from e
    return module


def ensure_push_batch_files(repo: RepoObjects, data_dir: Path) -> None:
    """Create empty Parquet files for push sources' batch sources (Feast needs them to exist)."""
    import pandas as pd
    from feast import Entity, FeatureView, PushSource

    join_keys = {e.name: e.join_key for e in repo.named(Entity)}
    for fv in repo.named(FeatureView):
        if not isinstance(fv.stream_source, PushSource):
            continue
        batch = fv.stream_source.batch_source
        target = data_dir / batch.path
        if target.suffix != ".parquet":  # a folder of files, appended to (features/realtime.py)
            target = target / "part-00000000-empty.parquet"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        cols: dict[str, Any] = {join_keys[e]: pd.Series(dtype="string") for e in fv.entities}
        cols[batch.timestamp_field] = pd.Series(dtype="datetime64[us, UTC]")
        for field in fv.features:
            cols[field.name] = pd.Series(dtype="float64" if "Float" in str(field.dtype) else "int64")
        pd.DataFrame(cols).to_parquet(target, index=False)


def store_objects(settings: Settings, store: "FeatureStore") -> RepoObjects:
    """The repo's objects as they go into this store: its project is the store's own
    (feature_store.yaml may rename it per environment), with the declared description."""
    from feast import Project

    repo = load_definitions(settings.feature_repo, list(settings.features.categories))
    declared = repo.named(Project)
    description = declared[0].description if declared else ""
    objects = [o for o in repo.objects if not isinstance(o, Project)]
    return RepoObjects([Project(name=store.project, description=description), *objects])


def apply_definitions(settings: Settings, store: "FeatureStore | None" = None) -> list[str]:
    """Register the feature repo's objects (what ``feast apply`` does); returns their names."""
    from feast import Project

    store = store or open_store(settings)
    repo = store_objects(settings, store)
    ensure_push_batch_files(repo, settings.data_dir)
    store.apply(repo.objects)
    return [getattr(o, "name", "?") for o in repo.objects if not isinstance(o, Project)]


def feature_refs(store: "FeatureStore", service: str = FEATURE_SERVICE) -> list[str]:
    """Feature names (no view prefix) that a feature service serves, in order."""
    fs = store.get_feature_service(service)
    return [f.name for proj in fs.feature_view_projections for f in proj.features]


def plan_changes(settings: Settings, store: "FeatureStore") -> str:
    """The registry diff `apply` would make, as text (Feast's own plan)."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
    from feast.data_source import DataSource
    from feast.repo_contents import RepoContents

    repo = store_objects(settings, store)

    contents = RepoContents(
        projects=repo.named(Project), data_sources=repo.named(DataSource), entities=repo.named(Entity),
        feature_views=repo.named(FeatureView), feature_services=repo.named(FeatureService),
        on_demand_feature_views=repo.named(OnDemandFeatureView), stream_feature_views=[], label_views=[],
        permissions=[],
    )
    registry_diff, infra_diff, _ = store.plan(contents)
    return "\n".join(t for t in (registry_diff.to_string(), infra_diff.to_string()) if t.strip())


def view_freshness(store: "FeatureStore", fv: Any) -> dict[str, Any]:
    """Kind, entities, source and the newest materialized time of a view (for list/describe)."""
    from feast import OnDemandFeatureView

    if isinstance(fv, OnDemandFeatureView):
        sources = [*fv.source_feature_view_projections, *fv.source_request_sources]
        return {"kind": "on-demand view", "entities": ["(from sources)"], "source": ", ".join(sources),
                "freshness": "computed per request"}
    intervals = getattr(fv, "materialization_intervals", []) or []
    fresh = max((end for _, end in intervals), default=None)
    source = fv.stream_source.name if fv.stream_source is not None else fv.batch_source.name
    kind = "push view" if fv.stream_source is not None else "batch view"
    return {"kind": kind, "entities": list(fv.entities), "source": source,
            "freshness": f"{fresh:%Y-%m-%d %H:%M} UTC" if fresh else ("pushed" if fv.stream_source else "never")}
