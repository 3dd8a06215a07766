//! The control socket: arbitrary bytes as one request line, decoded as the daemon
//! decodes it, and a decoded edit made on a small list. What is checked:
//! `borderfilter_fuzz::checks::control_request`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| borderfilter_fuzz::checks::control_request(data));
