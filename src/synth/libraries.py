"""setigen, imported quietly (blimpy, its dependency, warns about pkg_resources on import); one place for both
generators, and light: importing generator.py would pull in scikit-learn through the Kaggle layout."""

from __future__ import annotations

import warnings


def import_setigen():
    """Import setigen lazily and quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import setigen as stg
    return stg
