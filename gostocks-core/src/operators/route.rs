//! Moving records to their symbol's worker, a message at a time.

use timely::container::{ContainerBuilder, LengthPreservingContainerBuilder, PushInto};
use timely::dataflow::channels::pact::{ExchangeCore, ParallelizationContract};

use crate::symbol::Symbol;

/// The exchange that routes each record to the worker of its symbol
/// ([`super::symbol_route`]), shipping what an operator sends to one worker in one activation
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
    whole_pact(move |t: &T| super::symbol_route(symbol(t)))
}

/// The exchange that routes each record to worker `route(record) % workers`, in whole messages
/// (see [`symbol_pact`]).
pub(crate) fn whole_pact<T>(
    route: impl Fn(&T) -> u64 + 'static,
) -> impl ParallelizationContract<u64, Vec<T>>
where
    T: timely::ExchangeData + Clone,
{
    ExchangeCore::<WholeMessages<T>, _>::new_core(route)
}

/// A container builder that keeps every record pushed until it is finished (when the sender's
/// message or activation ends), or until it holds [`WholeMessages::MAX`] records.
pub(crate) struct WholeMessages<T> {
    current: Vec<T>,
    /// The container last handed out; it comes back holding anything, and takes the next
    /// records.
    shipped: Vec<T>,
}

impl<T> WholeMessages<T> {
    /// The most records a message takes: bounds what one send holds.
    const MAX: usize = 1 << 16;

    /// Hands out `current`, keeping the container that comes back for the next records.
    fn ship(&mut self) -> Option<&mut Vec<T>> {
        std::mem::swap(&mut self.current, &mut self.shipped);
        self.current.clear();
        Some(&mut self.shipped)
    }
}

impl<T> Default for WholeMessages<T> {
    fn default() -> Self {
        WholeMessages {
            current: Vec::new(),
            shipped: Vec::new(),
        }
    }
}

impl<T> PushInto<T> for WholeMessages<T> {
    #[inline]
    fn push_into(&mut self, item: T) {
        self.current.push(item);
    }
}

impl<T: Clone + 'static> ContainerBuilder for WholeMessages<T> {
    type Container = Vec<T>;

    fn extract(&mut self) -> Option<&mut Vec<T>> {
        if self.current.len() >= Self::MAX {
            self.ship()
        } else {
            None
        }
    }

    fn finish(&mut self) -> Option<&mut Vec<T>> {
        if self.current.is_empty() {
            None
        } else {
            self.ship()
        }
    }
}

impl<T: Clone + 'static> LengthPreservingContainerBuilder for WholeMessages<T> {}
