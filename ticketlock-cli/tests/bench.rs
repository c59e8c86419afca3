//! TEMP(lead): compiles `src/bench.rs` here so that its unit tests run
//! before `main.rs` declares `mod bench;`. Delete this file when it does
//! (the same tests then run with the binary's unit tests).

#[allow(dead_code)]
#[path = "../src"]
mod src {
    pub mod bench;
}
