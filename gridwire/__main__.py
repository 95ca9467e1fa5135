"""``python -m gridwire``: the ``gridwire`` command (:func:`gridwire.entry.main`)."""

from gridwire.entry import main

main()
