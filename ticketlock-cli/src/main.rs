//! The `ticketlock` command.
fn main() {}
