//! The limit on concurrent `CreateVolume` calls (the per-volume guard is
//! [`crate::volume_guard`], shared with the node plugin).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

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
    fn the_create_limit_aborts_the_next_call() {
        let limit = CreateLimit::new(1);
        let permit = limit.take().expect("one");
        assert_eq!(limit.take().expect_err("two").code(), tonic::Code::Aborted);
        drop(permit);
        let _freed = limit.take().expect("freed");
    }
}
