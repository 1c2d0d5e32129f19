"""Settings for the whole suite."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI the property and fuzz tests draw the same examples every run, so a landing is never
# decided by chance; on developers' machines they keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
