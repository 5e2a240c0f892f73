//! `rbuild run` containers: state under `<root>/containers/<id>/`, lifecycle, logs.
