//! Generated container names (`adjective_surname`), as Docker makes them.
