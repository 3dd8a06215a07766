//! The contract between the XDP program (`filter-ebpf`) and user space (`filter-user`).
//!
//! Everything both sides must agree on lives here and only here: map names and sizes,
//! the layout of map keys and values, action codes and counter indices.
//! All integers in these structs are in host byte order unless a field says otherwise;
//! addresses in LPM keys are in network byte order (the bytes as they appear on the wire).
#![no_std]

pub mod action;
pub mod bench;
pub mod maps;
pub mod parse;
pub mod poptrie;
pub mod types;
pub mod verdict;

pub use types::{
    Counter, Entry, LongKey, LongValue, RedirectTarget, Rule, Slot, SlotCell, SLOT_DENSE,
    SLOT_INLINE,
};
