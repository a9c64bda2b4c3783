"""The pipeline's configuration: config.toml, overridden by the environment.

    from pipeline.config import load_config
    config = load_config()                 # $PIPELINE_CONFIG or ./config.toml
    app = config.app(None)                 # [pipeline].default_app
    app.resources.cpu_limit_millicores     # 500

`load_config` checks everything at once and raises `ConfigError` with one
line per problem. The result is frozen and holds no secrets.
"""

from pipeline.config._env import GENERIC_PREFIX, NAMED as NAMED_ENV_OVERRIDES, parse_value
from pipeline.config._load import DEFAULT_PATH, load_config
from pipeline.config._model import (
    TARGETS,
    AcrConfig,
    AksConfig,
    AppConfig,
    AzureConfig,
    Gate,
    KubernetesConfig,
    PipelineConfig,
    PipelineSection,
    RegistryConfig,
    Resources,
    Rollout,
    Target,
    TemporalConfig,
)
from pipeline.config._profile import load_profile
from pipeline.config._quantity import cpu_millicores, memory_bytes, parse_cpu, parse_memory
from pipeline.config._render import to_dict, to_toml
from pipeline.config._schema import derived_registry_name
from pipeline.errors import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "GENERIC_PREFIX",
    "NAMED_ENV_OVERRIDES",
    "TARGETS",
    "AcrConfig",
    "AksConfig",
    "AppConfig",
    "AzureConfig",
    "ConfigError",
    "Gate",
    "KubernetesConfig",
    "PipelineConfig",
    "PipelineSection",
    "RegistryConfig",
    "Resources",
    "Rollout",
    "Target",
    "TemporalConfig",
    "cpu_millicores",
    "derived_registry_name",
    "load_config",
    "load_profile",
    "memory_bytes",
    "parse_cpu",
    "parse_memory",
    "parse_value",
    "to_dict",
    "to_toml",
]
