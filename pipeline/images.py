"""Image references: everything deployed is named by digest.

A tag is a pointer someone can move; a digest is the image. The CLI turns a
tag into the digest the registry has for it before anything is started, and
previews (`render`, `deploy --dry-run`) use the registry's build of the
current source, so nothing is built just to look.
"""

from __future__ import annotations

from pipeline.builders.local import is_complete_build_of, source_and_tag
from pipeline.errors import (
    ImageNotFound,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
)
from pipeline.models import DeployRequest
from pipeline.references import split_reference
from pipeline.registry import RegistryError, find_image


def resolve_digest(image: str) -> str:
    """`repo:tag` → `repo@sha256:…` as the registry has it now; a digest reference is kept as is."""
    repository, tag, digest = split_reference(image)
    if digest:
        return f"{repository}@{digest}"
    try:
        found = find_image(repository, tag or "latest")
    except RegistryError as exc:
        raise ImageNotFound(f"--image {image}: {exc}") from exc
    if found is None:
        raise ImageNotFound(f"--image {image}: the registry has no such image")
    return f"{repository}@{found.digest}"


def image_for_preview(request: DeployRequest) -> tuple[str, str]:
    """(image by digest, build id) to render without building: --image, or the current source's build."""
    if request.image:
        return request.image, split_reference(request.image)[2]
    build = request.app.build
    if build is None:
        raise ImageNotFound(f"{request.app.name}: no image given and nothing to build")
    digest_of_source, tag = source_and_tag(build, request.tag)
    try:
        found = find_image(build.repository, tag)
    except RegistryError as exc:
        raise ImageNotFound(f"{build.repository}:{tag}: {exc}") from exc
    if found is None or not is_complete_build_of(found, digest_of_source, build.platforms):
        raise ImageNotFound(
            f"{build.repository}:{tag} has not been built from the current source"
            + (f" for {', '.join(build.platforms)}" if len(build.platforms) > 1 else "")
            + " yet; pass --image REF, or deploy once to build it"
        )
    return f"{build.repository}@{found.digest}", found.digest
