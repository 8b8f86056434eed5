//! One call at a time per volume, for the controller and the node plugin
//! alike: a call that finds its volume busy is refused at once with
//! ABORTED (the CSI specification's answer; the CO retries with backoff),
//! so no call waits behind a slow one and no lock is held across a wait
//! for another.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

/// The volumes with a call in flight.
#[derive(Debug, Default, Clone)]
pub struct VolumeGuards {
    // A std mutex: held only to insert or remove, never across an await.
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Held while a call on a volume runs; frees the volume when dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    volume: String,
}

/// The refusal: another call holds the volume (ABORTED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy(pub String);

impl From<Busy> for tonic::Status {
    fn from(b: Busy) -> Self {
        tonic::Status::aborted(b.0)
    }
}

impl VolumeGuards {
    /// Takes `volume`, or [`Busy`] when another call holds it.
    pub fn take(&self, volume: &str) -> Result<VolumeGuard, Busy> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(volume.to_owned()) {
            return Err(Busy(format!(
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
    fn a_volume_is_held_once_and_freed_on_drop() {
        let guards = VolumeGuards::default();
        let first = guards.take("a").expect("free");
        let again = guards.take("a").expect_err("held");
        assert_eq!(tonic::Status::from(again).code(), tonic::Code::Aborted);
        let _other = guards.take("b").expect("another volume is free");
        drop(first);
        guards.take("a").expect("freed");
    }
}
