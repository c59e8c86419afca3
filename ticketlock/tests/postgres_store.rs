#![cfg(feature = "postgres")]
//! placeholder
