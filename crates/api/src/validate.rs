//! Validation beyond the schema.
