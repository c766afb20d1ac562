//! Unit tests of the translation logic against temp dirs.
