"""The intake: the data contract, its validation, mapping a user's exports onto it, one-file (tabular) sources,
personal-data detection and what each kind of source supports."""
