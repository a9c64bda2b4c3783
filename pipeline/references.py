"""Image references, parsed in one place: `[registry[:port]/]path[:tag][@sha256:digest]`.

Pure and import-free, so the workflow (deterministic code), the renderer and
the registry client share it.
"""

from __future__ import annotations


def split_reference(image: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of `repo[:tag][@sha256:...]`; missing parts are ""."""
    repository, _, digest = image.partition("@")
    tag = ""
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = repository.rsplit(":", 1)
    return repository, tag, digest


def build_id_of(image: str) -> str:
    """An image's build id, as its pods report it to Temporal: the digest; the tag for an image given by tag."""
    _, tag, digest = split_reference(image)
    return digest or tag or image
