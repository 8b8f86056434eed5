//! One call at a time per volume. A call that finds its volume busy is
//! refused with ABORTED at once (the CSI spec's answer; the CO retries), so
//! no call waits behind a slow connect and no lock is held across a wait
//! for another.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use super::error::NodeError;

/// The set of volumes with a call in progress.
#[derive(Debug, Default, Clone)]
pub struct VolumeLocks {
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Held while a call works on a volume; frees it when dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    volume: String,
}

impl VolumeLocks {
    /// Takes `volume`, or ABORTED when another call holds it.
    pub fn try_lock(&self, volume: &str) -> Result<VolumeGuard, NodeError> {
        // A std mutex: held for a set insert only, never across an await.
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(volume.to_owned()) {
            return Err(NodeError::Aborted(format!(
                "an operation on volume {volume} is already in progress"
            )));
        }
        Ok(VolumeGuard {
            busy: self.busy.clone(),
            volume: volume.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&self.volume);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_call_on_a_volume_is_aborted_until_the_first_ends() {
        let locks = VolumeLocks::default();
        let g = locks.try_lock("a").expect("free");
        assert!(matches!(locks.try_lock("a"), Err(NodeError::Aborted(_))));
        let _other = locks.try_lock("b").expect("another volume is free");
        drop(g);
        locks.try_lock("a").expect("free again");
    }
}
