"""``persona package``: the service and its champion models as one BentoML bento."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from persona.commands.common import ConfigOpt, load


def package(config: ConfigOpt = None,
            build: Annotated[bool, typer.Option("--build/--no-build", help="run `bentoml build` after the export")] = True,
            output: Annotated[Optional[Path], typer.Option(help="also export the bento to this file")] = None) -> None:
    """Copy the champions into BentoML's model store and build the bento from bentofile.yaml."""
    from serving.process import PROJECT_ROOT, service_env
    from serving.bento_models import export_champions

    settings = load(config)
    env = service_env(settings)
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]  # the model store the build reads
    tags = export_champions(settings.ml)
    typer.echo(f"models exported to {env['BENTOML_HOME']}: {', '.join(tags)}")
    if not build:
        return
    tools = PROJECT_ROOT / ".tools" / "bin"  # bentoml build runs uv: the Makefile installs it here
    if shutil.which("uv", path=env.get("PATH")) is None and (tools / "uv").exists():
        env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    bentoml = str(Path(sys.executable).parent / "bentoml")
    cmd = [bentoml, "build", "-f", str(PROJECT_ROOT / "bentofile.yaml"), str(PROJECT_ROOT), "--output", "tag"]
    result = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        typer.echo(result.stdout + result.stderr, err=True)
        raise typer.Exit(result.returncode)
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    typer.echo(f"bento built: {tag}")
    if output is not None:
        subprocess.run([bentoml, "export", tag, str(output)], env=env, check=True)
        typer.echo(f"bento exported to {output}")
