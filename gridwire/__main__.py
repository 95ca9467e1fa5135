"""``python -m gridwire``: the ``gridwire`` command (:func:`gridwire.entry.main`)."""

from gridwire.entry import main

if __name__ == "__main__":  # importing the module (the error-family test walks every module) runs nothing
    main()
