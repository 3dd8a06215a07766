//! Keeping the filter where it belongs: attached to every configured interface (again,
//! if it was removed behind the daemon's back), the redirect target resolved, and removed
//! only by `borderfilter detach`.

use std::collections::BTreeSet;

use super::Engine;
use crate::{dataplane::detach_pinned, error_chain};

impl Engine {
    /// Resolves the redirect target again and updates the data plane if it changed.
    pub fn refresh_redirect(&mut self) {
        let config = self.config.redirect.clone();
        self.redirect
            .refresh(config.as_ref(), self.dataplane.maps_mut());
    }

    /// Attaches the filter again to a configured interface it was removed from behind the
    /// daemon's back (`ip link set dev IF xdp off`): a court order is not lifted by a
    /// stray command. `borderfilter detach` is the way to remove it. Run every heartbeat.
    pub fn keep_attached(&mut self) {
        // After a detach the daemon stops; a heartbeat that runs in between must not put
        // back what the operator removed (its maps are no longer even pinned).
        if self.detached {
            return;
        }
        let present: BTreeSet<String> = self
            .dataplane
            .attachments()
            .into_iter()
            .map(|a| a.iface)
            .collect();
        for iface in self.config.ifaces.clone() {
            if present.contains(&iface) {
                self.attach_failures.remove(&iface);
                continue;
            }
            match self.dataplane.attach(&iface, self.config.xdp_mode) {
                Ok(a) => {
                    log::error!(
                        "{iface}: the filter was removed from the interface behind the daemon's back; attached it again ({} mode). Use `borderfilter detach` to remove it",
                        a.mode
                    );
                    *self.history.reattached.entry(iface.clone()).or_default() += 1;
                    self.attach_failures.remove(&iface);
                    self.attached.retain(|x| x.iface != iface);
                    self.attached.push(a);
                }
                Err(e) => {
                    let problem = error_chain(&e);
                    if self.attach_failures.get(&iface) != Some(&problem) {
                        log::error!("{iface}: the filter is not attached and attaching it again failed: {problem}");
                        self.attach_failures.insert(iface.clone(), problem);
                    }
                }
            }
        }
    }

    /// Removes the program from every interface and removes the pins.
    pub fn detach(&mut self) -> Result<Vec<String>, String> {
        let detached = detach_pinned(&self.config.pin_dir).map_err(|e| error_chain(&e))?;
        self.detached = true;
        self.attached.clear();
        log::warn!(
            "detached from {detached:?} and removed the pins in {}: nothing is enforced now",
            self.config.pin_dir.display()
        );
        Ok(detached)
    }
}
