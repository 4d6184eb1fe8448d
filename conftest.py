"""Test-wide settings: every notebook and test runs the smoke profile in a scratch folder."""

import os
import tempfile

# nbval cannot pass papermill parameters, so the notebooks read their profile from here.
os.environ["REPRO_PROFILE"] = "smoke"
# Smoke output of the test run goes to a scratch root, never into the checkout's smoke/ or results/.
os.environ.setdefault("REPRO_ROOT", tempfile.mkdtemp(prefix="repro-tests-"))
os.environ.setdefault("MPLBACKEND", "Agg")
