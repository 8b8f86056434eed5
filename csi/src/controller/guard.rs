//! One call at a time per volume: a second call on a volume while one is in
//! flight gets ABORTED at once (the CO retries with backoff), as the CSI
//! specification asks. Also the limit on concurrent `CreateVolume` calls.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

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

impl VolumeGuards {
    /// Takes `volume`, or ABORTED when another call holds it.
    pub fn take(&self, volume: &str) -> Result<VolumeGuard, Status> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(volume.to_owned()) {
            return Err(Status::aborted(format!(
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

/// At most N `CreateVolume` calls at once; the next one is ABORTED.
#[derive(Debug, Clone)]
pub struct CreateLimit {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl CreateLimit {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    pub fn take(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::aborted(format!(
                "{} volume creations are already in progress (--create-volume-limit)",
                self.limit
            ))
        })
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
        assert_eq!(again.code(), tonic::Code::Aborted);
        let _other = guards.take("b").expect("another volume is free");
        drop(first);
        guards.take("a").expect("freed");
    }

    #[test]
    fn the_create_limit_aborts_the_next_call() {
        let limit = CreateLimit::new(1);
        let permit = limit.take().expect("one");
        assert_eq!(limit.take().expect_err("two").code(), tonic::Code::Aborted);
        drop(permit);
        let _freed = limit.take().expect("freed");
    }
}
