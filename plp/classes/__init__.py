"""Classes (SPEC §12): who belongs to which class, join codes, and who sees which channel.

Tornado-free like plp/auth: `service.py` creates, renames and deletes classes, joins by
code, adds and removes members and raises domain errors (plp/errors.py); `visibility.py` is
the one rule of which channels a user may see, used by REST, history, message deletion and
every chat frame; `codes.py` makes and reads join codes.
"""
