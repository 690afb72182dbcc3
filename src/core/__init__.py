"""Ground floor: what every stage shares and nothing else. The cadence's shape, observation order and frame
resolution (cadence.py), the one frozen run config and its YAML/command-line loading (config.py), the errors a
user can act on (errors.py), writes that are whole or absent (files.py), and how the entry points turn a user
error into one `error:` line (cli.py).

May import: nothing of the project.
"""
