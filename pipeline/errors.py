"""The pipeline's one error tree.

Every failure the pipeline reports to a person is one of these, so the CLI can
print it as plain lines (never a traceback) and callers can catch by kind:

    PipelineError                 base; `.message` is what to print
    └── ConfigError               config.toml or an env override is unusable;
                                  `.problems` holds one formatted line each

Later layers add their own branches here (for example `BuildError`,
`ClusterError`), each raised `from` the library error it translates.
"""

from __future__ import annotations

from collections.abc import Iterable


class PipelineError(Exception):
    """Base of every error the pipeline reports; `message` says what failed and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints to stderr."""
        return self.message.splitlines() or [self.message]


class ConfigError(PipelineError):
    """The configuration is unusable; every problem found is listed, one line each.

    All problems are collected before raising so a person fixes the file once,
    not once per error.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))

    def lines(self) -> list[str]:
        return list(self.problems)
