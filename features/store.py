"""Open the Feast store for a data directory and apply the definitions in ``feature_repo/``."""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from base.config import ConfigError, Settings
from base.paths import DataPaths

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_SERVICE = "persona_v2"  # persona_v1 plus the lifetime features (issue 17)
BEHAVIOUR_VIEW = "user_behaviour"
CATEGORIES_ENV = "PERSONA_FEATURE_CATEGORIES"
"""Set (comma-separated, empty = none) while ``persona`` imports the feature repo: the categories of the
settings in use, so the repo's views follow the configuration the store is opened with."""
SNAPSHOT_EVERY_ENV = "PERSONA_SNAPSHOT_EVERY_DAYS"
"""Set the same way: the snapshot grid (``features.snapshot_every_days``) the read-time features assume."""


def repo_categories(default_config: Path | None = None) -> list[str]:
    """The categories the feature repo declares affinity features for: those of the settings ``persona``
    imports it with, else ``features.categories`` of ``$PERSONA_CONFIG``, else of ``default_config`` (the
    plain ``feast`` CLI run from ``feature_repo/``: the checkout's persona.yaml), else the project's."""
    value = os.environ.get(CATEGORIES_ENV)
    if value is not None:
        return [c for c in value.split(",") if c]
    from base.config import CONFIG_ENV, PROJECT_FEATURE_REPO, load_settings

    if default_config is None or not default_config.is_file():  # a copy of the repo on its own
        default_config = PROJECT_FEATURE_REPO.parent / "persona.yaml"
    return list(load_settings(os.environ.get(CONFIG_ENV) or default_config).features.categories)


def repo_snapshot_every_days(default_config: Path | None = None) -> int:
    """The snapshot grid the feature repo's read-time features assume, found like :func:`repo_categories`."""
    value = os.environ.get(SNAPSHOT_EVERY_ENV)
    if value:
        return int(value)
    from base.config import CONFIG_ENV, PROJECT_FEATURE_REPO, load_settings

    if default_config is None or not default_config.is_file():
        default_config = PROJECT_FEATURE_REPO.parent / "persona.yaml"
    return int(load_settings(os.environ.get(CONFIG_ENV) or default_config).features.snapshot_every_days)


@contextmanager
def _categories_set(categories: list[str] | None, every_days: int | None = None) -> Iterator[None]:
    """:data:`CATEGORIES_ENV` (and :data:`SNAPSHOT_EVERY_ENV`) set for the duration of an import of the
    feature repo (then restored)."""
    values = {CATEGORIES_ENV: None if categories is None else ",".join(categories),
              SNAPSHOT_EVERY_ENV: None if every_days is None else str(every_days)}
    before = {k: os.environ.get(k) for k, v in values.items() if v is not None}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


FEAST_PROJECT_ENV = "PERSONA_FEAST_PROJECT"
"""Overrides the Feast project for one process (benchmarks and tests isolate themselves with it)."""
REPO_DATA_DIR = "DATA_DIR"
"""Name of the definitions' constant for the data directory their paths (and feature_store*.yaml's) are under."""


def repo_yaml(settings: Settings, profile: str | None = None) -> Path:
    """The feature_store YAML for the settings' profile (or ``profile``)."""
    profile = profile or settings.profile
    name = "feature_store.yaml" if profile == "default" else f"feature_store.{profile}.yaml"
    return settings.feature_repo / name


def read_feast_yaml(path: Path) -> dict[str, Any]:
    """A feature_store YAML read exactly as Feast reads it (``os.path.expandvars``, then YAML)."""
    import os

    import yaml

    try:
        raw = yaml.safe_load(os.path.expandvars(path.read_text(encoding="utf-8"))) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read Feast configuration: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unset = [v for v in _strings(raw) if "$" in v]
    if unset:  # Feast would carry the text on as a name or a path
        raise ConfigError(f"{path}: {unset[0]!r}: environment variable not set (Feast has no ${{VAR:-default}})")
    return raw


def _strings(node: Any) -> list[str]:
    """Every string value of a parsed YAML tree."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def rebase(path: str, repo_data: Path, data_dir: Path) -> str:
    """A path the repo names under its data directory, moved into ``data_dir`` (other paths unchanged)."""
    import os

    try:
        return str(data_dir / Path(os.path.abspath(path)).relative_to(repo_data))
    except ValueError:
        return path


def open_store(settings: Settings, profile: str | None = None, project: str | None = None) -> "FeatureStore":
    """The FeatureStore the plain ``feast`` CLI sees from ``feature_repo/``, moved into the settings' data directory.

    The profile's feature_store YAML is read as Feast reads it, with relative paths against the repo (Feast's
    rule); file paths under the repo's data directory move into ``settings.data_dir`` (the same place with the
    default persona.yaml). ``project`` overrides the Feast project (default ``$PERSONA_FEAST_PROJECT``, else the YAML's).
    """
    from feast import FeatureStore

    config = store_config(settings, profile, project)
    return FeatureStore(repo_path=str(settings.feature_repo), config=config)


def store_config(settings: Settings, profile: str | None = None, project: str | None = None,
                 overlay: dict[str, Any] | None = None) -> Any:
    """The ``RepoConfig`` :func:`open_store` opens: the profile's YAML (top-level keys of ``overlay``
    replacing its own, e.g. the Spark profile's offline store), paths moved into the settings' data directory."""
    import os

    from feast.repo_config import RepoConfig

    path = repo_yaml(settings, profile)
    raw = {**read_feast_yaml(path), **(overlay or {})}
    project = project or os.environ.get(FEAST_PROJECT_ENV)
    if project:
        raw["project"] = project
    try:
        config = RepoConfig(**raw)
    except Exception as e:  # pydantic ValidationError or Feast's own config errors
        raise ConfigError(f"{path}: invalid Feast configuration: {e}") from e
    config.repo_path = settings.feature_repo
    repo_data = repo_data_dir(settings.feature_repo)
    if Path(settings.data_dir).resolve() != repo_data:  # else the paths stay exactly as `feast` reads them
        if config.registry.registry_type == "file":
            config.registry.path = rebase(str(settings.feature_repo / config.registry.path), repo_data,
                                          settings.data_dir)
        if config.online_store.type == "sqlite":
            config.online_store.path = rebase(str(settings.feature_repo / config.online_store.path), repo_data,
                                              settings.data_dir)
    DataPaths(settings.data_dir).feast.mkdir(parents=True, exist_ok=True)
    return config


@dataclass
class RepoObjects:
    """Feast objects declared in the feature repo's modules, and the data directory their paths are under."""

    objects: list[Any]
    data_dir: Path | None = None

    def named(self, kind: type) -> list[Any]:
        """Objects of one Feast class."""
        return [o for o in self.objects if isinstance(o, kind)]


def load_definitions(repo_dir: Path, categories: list[str] | None = None,
                     every_days: int | None = None) -> RepoObjects:
    """Import every module of the feature repo and collect its Feast objects (like ``feast apply``);
    ``categories``: the configured categories the repo declares affinity features for; ``every_days``:
    the configured snapshot grid."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
    from feast.data_source import DataSource

    kinds = (Project, Entity, FeatureView, OnDemandFeatureView, FeatureService, DataSource)
    files = [f for f in sorted(repo_dir.glob("*.py")) if not f.name.startswith(("_", "test_"))]
    for file in files:  # modules of another repo copy with the same names must not be reused
        sys.modules.pop(file.stem, None)
    found: list[Any] = []
    data_dir: Path | None = None
    sys.path.insert(0, str(repo_dir))  # definitions may import each other, as with `feast apply`
    try:
        with _categories_set(categories, every_days):
            for file in files:
                module = sys.modules.get(file.stem) or _import_file(file)
                data_dir = getattr(module, REPO_DATA_DIR, None) or data_dir
                for value in vars(module).values():
                    if isinstance(value, kinds) and not any(value is o for o in found):
                        found.append(value)
    finally:
        sys.path.remove(str(repo_dir))
    return RepoObjects(found, Path(data_dir) if data_dir else None)


def repo_data_dir(repo_dir: Path) -> Path:
    """The data directory the feature repo names (``DATA_DIR`` in its definitions; else the repo's ``../data``)."""
    return load_definitions(repo_dir).data_dir or (repo_dir.parent / "data")


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


def file_sources(repo: RepoObjects) -> list[Any]:
    """Every file source of the repo: declared, behind a push source, or a view's own."""
    from feast import FeatureView, FileSource, PushSource

    candidates = [*repo.named(FileSource), *[p.batch_source for p in repo.named(PushSource)]]
    for fv in repo.named(FeatureView):
        candidates += [fv.batch_source, getattr(fv.stream_source, "batch_source", None)]
    found: list[Any] = []
    for source in candidates:
        if isinstance(source, FileSource) and not any(source is f for f in found):
            found.append(source)
    return found


def store_objects(settings: Settings, store: "FeatureStore") -> RepoObjects:
    """The repo's objects as they go into this store: its project is the store's own
    (feature_store.yaml may rename it per environment), with the declared description, and file sources
    under the repo's data directory moved into the settings' one."""
    from feast import Project

    repo = load_definitions(settings.feature_repo, list(settings.features.categories),
                            settings.features.snapshot_every_days)
    declared = repo.named(Project)
    description = declared[0].description if declared else ""
    objects = [o for o in repo.objects if not isinstance(o, Project)]
    if repo.data_dir is not None:  # the definitions were just imported: these source objects are this call's own
        for source in file_sources(repo):
            source.file_options.uri = rebase(source.path, repo.data_dir, settings.data_dir)
    return RepoObjects([Project(name=store.project, description=description), *objects], repo.data_dir)


def apply_definitions(settings: Settings, store: "FeatureStore | None" = None) -> list[str]:
    """Register the feature repo's objects the way ``feast apply`` does (Feast's own apply; objects no longer
    declared are removed); returns their names."""
    import contextlib
    import io

    from feast import Project
    from feast.repo_operations import apply_total_with_repo_instance

    store = store or open_store(settings)
    repo = store_objects(settings, store)
    ensure_push_batch_files(repo, settings.data_dir)
    with contextlib.redirect_stdout(io.StringIO()):  # Feast echoes its diff; `persona features plan` shows it
        apply_total_with_repo_instance(store, store.project, store.registry, repo_contents(repo),
                                       skip_source_validation=True)
    return [getattr(o, "name", "?") for o in repo.objects if not isinstance(o, Project)]


def repo_contents(repo: RepoObjects) -> Any:
    """The objects as Feast's ``RepoContents`` (what ``feast plan``/``apply`` read from a repo, with Feast's
    dummy entity as ``parse_repo`` adds it)."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
    from feast.data_source import DataSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents

    return RepoContents(
        projects=repo.named(Project), data_sources=repo.named(DataSource),
        entities=[*repo.named(Entity), DUMMY_ENTITY],
        feature_views=repo.named(FeatureView), feature_services=repo.named(FeatureService),
        on_demand_feature_views=repo.named(OnDemandFeatureView), stream_feature_views=[], label_views=[],
        permissions=[],
    )


def feature_refs(store: "FeatureStore", service: str = FEATURE_SERVICE) -> list[str]:
    """Feature names (no view prefix) that a feature service serves, in order."""
    fs = store.get_feature_service(service)
    return [f.name for proj in fs.feature_view_projections for f in proj.features]


def plan_changes(settings: Settings, store: "FeatureStore") -> str:
    """The registry diff `apply` would make, as text (Feast's own plan)."""
    registry_diff, infra_diff, _ = store.plan(repo_contents(store_objects(settings, store)))
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
