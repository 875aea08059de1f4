//! The shutdown signal that every long-lived part watches: the servers stop accepting, open
//! gRPC streams and REST long polls end (with what they have), and readiness turns false, as
//! soon as it is given.

use std::sync::Arc;

use tokio::sync::watch;

/// A one-way switch from running to shutting down, shared by whatever must notice it.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    /// Starts the shutdown (again: no effect).
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn started(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|started| *started).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_switch() {
        let s = Shutdown::default();
        let other = s.clone();
        assert!(!other.started());
        let waiting = tokio::spawn(async move { other.wait().await });
        s.begin();
        waiting.await.unwrap();
        assert!(s.started());
        // Waiting after the fact resolves at once.
        s.wait().await;
    }
}
