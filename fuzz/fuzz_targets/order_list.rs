//! The order list file: arbitrary bytes through the parser and validator. What is
//! checked: `borderfilter_fuzz::checks::order_list`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| borderfilter_fuzz::checks::order_list(data));
