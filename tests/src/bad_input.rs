//! What the bad-input tests (`e2e_bad_lists.rs`, `e2e_bad_requests.rs`) share: the good
//! list the daemon holds while the bad input comes.

use crate::topology::{order, order_list};

/// Order DROP-1, blocking 198.51.100.0/24 and 2001:db8:66::/48.
pub fn good() -> String {
    order_list(
        &[order(
            "DROP-1",
            "drop",
            &["198.51.100.0/24", "2001:db8:66::/48"],
            "",
        )],
        &[],
    )
}
