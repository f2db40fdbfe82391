//! Helpers live in the test files; this crate exists to hold end-to-end tests.

#![forbid(unsafe_code)]
