//! Parsing of the `lock_store:` section of Rasa's `endpoints.yml`.
