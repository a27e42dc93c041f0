"""Configuration: ``settings`` (what a run is told: selection, thresholds, overrides, suppressions),
``file`` (weightlint.yaml / pyproject.toml: discovery, loading, validation) and ``limits`` (what one
input may cost). The settings are the package's interface."""

from weightlint.config.settings import (
                                        PROFILES,
                                        CheckContext,
                                        Config,
                                        Override,
                                        Pattern,
                                        Suppression,
                                        selector_matches,
                                        specificity,
)

__all__ = ["PROFILES", "CheckContext", "Config", "Override", "Pattern", "Suppression", "selector_matches",
           "specificity"]
