"""The step runtime: source -> decode -> validate -> process -> sinks -> commit (`alertops run`)."""
