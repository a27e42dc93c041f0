"""Running a check: ``session`` (resolve, read, check, report) and what it is made of —
``scheduling`` (jobs and the memory budget), ``policy`` (selection, suppressions, baseline,
protection), ``report``, ``device`` and ``errors``. Nothing is imported here, so that importing
``errors`` from the command line stays light."""
