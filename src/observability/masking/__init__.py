"""One masking policy for every sink: logs, files, CloudWatch, error store, Sentry, notifications.

    masker = default_masker()
    masker.mask(value)          # any structure; secrets replaced, clean parts returned as is
    masker.mask_text(text)      # one string
    masker.mask_event(event)    # a log event, in place (the log pipeline's hook)
    masker.mask_header(name, value)   # a request header fit to log (last 4 characters at most)
    masker.findings(text)       # where secrets are, by detector (audits)

Layout: `catalog.py` the detector table (what is recognised), `validators.py` the formats'
own checks, `keys.py` the key denylist and allowlist, `decode.py` percent/plus/JSON-escape
views, `engine.py` the one-pass prefilter and replacement, `masker.py` the walk over
structures. Scanning stored logs and errors after the fact is `observability.logaudit`.
"""

from observability.masking.catalog import CATALOG, Detector
from observability.masking.engine import MASK, Finding
from observability.masking.keys import DEFAULT_ALLOW_KEYS, DEFAULT_DENY_TERMS
from observability.masking.masker import Masker, MaskingConfig, default_masker

__all__ = [
    "CATALOG",
    "DEFAULT_ALLOW_KEYS",
    "DEFAULT_DENY_TERMS",
    "DETECTORS",
    "MASK",
    "Detector",
    "Finding",
    "Masker",
    "MaskingConfig",
    "default_masker",
]

DETECTORS: tuple[str, ...] = tuple(d.name for d in CATALOG)
