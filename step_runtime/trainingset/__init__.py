"""Training-set builds: crossmatch a table of objects with labeled catalogs and combine labels.

Pure functions (labels, combine, partition) sit at the core; reading tables, writing outputs,
the report and the command are the I/O edges.
"""
