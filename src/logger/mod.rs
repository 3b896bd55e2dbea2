//! Container log drivers: json-file (and local), written by the supervisor, read by berthd.
