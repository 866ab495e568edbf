"""Real data sets: download, verification, safe extraction and compact caches.

Importing this package is cheap: PIL and tqdm are imported only when archives are read or fetched.
"""

from metalearn_edu.data.download import (
    Checksum,
    check_member_name,
    download,
    safe_extract,
    sha256sum,
    verify_file,
)
from metalearn_edu.data.omniglot import Omniglot, load_omniglot, locate_archives
from metalearn_edu.data.splits import split_characters

__all__ = [
    "Checksum",
    "Omniglot",
    "check_member_name",
    "download",
    "load_omniglot",
    "locate_archives",
    "safe_extract",
    "sha256sum",
    "split_characters",
    "verify_file",
]
