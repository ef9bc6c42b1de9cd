"""Avro decoding: container files, and decoders generated per writer schema that build only the fields a step reads."""
