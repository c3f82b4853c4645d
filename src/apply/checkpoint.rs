//! What must still hold while a sync writes: nobody called it off, and this
//! process still holds the sync's lease. Checked at every record a swap
//! stages, just before the swap, and before each batch of a merge.

use std::sync::{Arc, OnceLock};

use crate::store::lease::Leases;

/// Calls a running sync off (the daemon's shutdown grace ran out, or its
/// lease was lost). The sync then stops at its next checkpoint without
/// swapping: the previous data stands (a merge keeps what it wrote, each
/// document either as before or as the sheet says). Once the swap was sent
/// it is too late, and the sync finishes its bookkeeping instead.
#[derive(Debug, Clone, Default)]
pub struct Abort(Arc<OnceLock<String>>);

impl Abort {
    /// Asks the sync to stop; the first reason given is kept.
    pub fn abort(&self, reason: impl Into<String>) {
        let _ = self.0.set(reason.into());
    }

    /// The reason, once the sync was called off.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// One sync's checkpoint, for either mode.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    pub abort: &'a Abort,
    /// The leases the caller holds, when it holds one on this sync.
    pub lease: Option<&'a Leases>,
    /// The sync's lease key.
    pub sync_id: &'a str,
}

impl Checkpoint<'_> {
    /// Whether the sync was called off (cheap: checked at every record).
    pub fn called_off(&self) -> Option<&str> {
        self.abort.reason()
    }

    /// Checks both conditions, extending the lease so that it cannot expire
    /// between this check and the write that follows. `Err` says why not.
    pub async fn check(&self) -> Result<(), String> {
        if let Some(reason) = self.called_off() {
            return Err(reason.to_owned());
        }
        if let Some(leases) = self.lease {
            match leases.renew(self.sync_id).await {
                Ok(true) => {}
                Ok(false) => return Err("the lease on this sync was taken over by another process".to_owned()),
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }
}
