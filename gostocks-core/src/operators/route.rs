//! Moving records to their symbol's worker ([`symbol_route`]), a message at a time.

use timely::communication::Push;
use timely::dataflow::channels::Message;
use timely::dataflow::channels::pact::{DistributorPact, ParallelizationContract};
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::progress::Stamp;

use crate::symbol::Symbol;

/// The exchange that routes each record to the worker of its symbol
/// ([`symbol_route`]), shipping what an operator sends to one worker in one activation
/// as one message.
///
/// Timely's default exchange cuts every outgoing stream into containers of about 8 KB: a few
/// dozen cells. The operators downstream do some work per message, and many small messages
/// cost more than the records in them; here a message to a worker is as large as what the
/// sender produced for it at once.
pub(crate) fn symbol_pact<T>(
    symbol: impl Fn(&T) -> &Symbol + 'static,
) -> impl ParallelizationContract<u64, Vec<T>>
where
    T: timely::ExchangeData + Clone,
{
    whole_pact(move |t: &T| symbol_route(symbol(t)))
}

/// The exchange that routes each record to worker `route(record) % workers`, in whole messages
/// (see [`symbol_pact`]).
pub(crate) fn whole_pact<T>(
    route: impl Fn(&T) -> u64 + 'static,
) -> impl ParallelizationContract<u64, Vec<T>>
where
    T: timely::ExchangeData + Clone,
{
    DistributorPact(move |peers| WholeMessages {
        route,
        staged: (0..peers).map(|_| Vec::new()).collect(),
        targets: Vec::new(),
    })
}

/// A distributor that keeps what an operator sends to each worker until the sender's
/// activation ends (or until it holds [`WholeMessages::MAX`] records), and passes a container
/// whose records all go to one worker on as it is, without copying a record.
struct WholeMessages<F, T> {
    route: F,
    /// Per worker, the records waiting to be shipped.
    staged: Vec<Vec<T>>,
    /// Each record's worker, for the container being partitioned.
    targets: Vec<u32>,
}

impl<F, T> WholeMessages<F, T> {
    /// The most records a staged message takes: bounds what one send holds.
    const MAX: usize = 1 << 16;
}

impl<F: Fn(&T) -> u64, T: Clone> Distributor<Vec<T>> for WholeMessages<F, T> {
    fn partition<S: Clone, P: Push<Message<S, Vec<T>>>>(
        &mut self,
        container: &mut Vec<T>,
        stamp: &Stamp<S>,
        pushers: &mut [P],
    ) {
        let peers = pushers.len() as u64;
        self.targets.clear();
        self.targets
            .extend(container.iter().map(|d| ((self.route)(d) % peers) as u32));
        let Some(&first) = self.targets.first() else {
            return;
        };
        if self.targets.iter().all(|&t| t == first) {
            Message::push_at(container, stamp.clone(), &mut pushers[first as usize]);
            // What comes back may hold anything: the caller expects it drained.
            container.clear();
            return;
        }
        for (record, &t) in container.drain(..).zip(&self.targets) {
            let staged = &mut self.staged[t as usize];
            staged.push(record);
            if staged.len() >= Self::MAX {
                Message::push_at(staged, stamp.clone(), &mut pushers[t as usize]);
                staged.clear();
            }
        }
    }

    fn flush<S: Clone, P: Push<Message<S, Vec<T>>>>(
        &mut self,
        stamp: &Stamp<S>,
        pushers: &mut [P],
    ) {
        for (staged, pusher) in self.staged.iter_mut().zip(pushers.iter_mut()) {
            if !staged.is_empty() {
                Message::push_at(staged, stamp.clone(), pusher);
                // A container that comes back holds anything: empty it.
                staged.clear();
            }
        }
    }

    fn relax(&mut self) {
        for staged in &mut self.staged {
            staged.shrink_to(Self::MAX);
        }
    }
}

/// The worker-routing hash of a symbol ([`Symbol::stable_hash`]): every operator that
/// partitions by symbol uses this one, so that consecutive exchanges by symbol stay on the same
/// worker. It does not depend on a random seed, so neither does which worker does what.
#[inline]
pub fn symbol_route(symbol: &Symbol) -> u64 {
    symbol.stable_hash()
}
