//! `Stash`: what an operator keeps per time until the time is final, and the capabilities it
//! needs to send it then.
//!
//! Several operators gather records by the time they belong to (which may be later than the
//! timestamp of the message that brought them) and act once the input frontier has passed that
//! time. They hold one capability per output, at the least time still waiting, rather than one
//! per time (each of which the workers' progress tracking would count and exchange), and they
//! reuse the emptied lists or maps of earlier times for later ones: a fresh one per time would
//! grow (and copy or rehash its contents) all over again.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use timely::dataflow::operators::{Capability, InputCapability};

/// What a [`Stash`] keeps for one time: emptied once the time is released, and reused, with
/// its allocation, for a later time.
pub(crate) trait Reuse: Default {
    /// Empties it, keeping its allocation.
    fn clear(&mut self);
}

impl<T> Reuse for Vec<T> {
    #[inline]
    fn clear(&mut self) {
        Vec::clear(self);
    }
}

impl<K, V, S: BuildHasher + Default> Reuse for HashMap<K, V, S> {
    #[inline]
    fn clear(&mut self) {
        HashMap::clear(self);
    }
}

impl<A: Reuse, B: Reuse, C: Reuse> Reuse for (A, B, C) {
    #[inline]
    fn clear(&mut self) {
        self.0.clear();
        self.1.clear();
        self.2.clear();
    }
}

/// Data stashed by time until the time is final, with a capability per output at the least
/// time stashed.
pub(crate) struct Stash<D> {
    pending: BTreeMap<u64, D>,
    /// Emptied data of released times, for later ones.
    spare: Vec<D>,
    /// How many outputs to hold a capability for (none for a sink).
    ports: usize,
    /// One capability per output, at the least time stashed; none when nothing is.
    held: Vec<Capability<u64>>,
}

impl<D: Reuse> Stash<D> {
    /// A stash that holds capabilities for `ports` outputs (`0` for a sink).
    pub(crate) fn new(ports: usize) -> Self {
        Stash {
            pending: BTreeMap::new(),
            spare: Vec::new(),
            ports,
            held: Vec::new(),
        }
    }

    /// The data stashed for `time`, which `cap`, the capability of the message that brought
    /// it, allows sending at: capabilities are held for it.
    #[inline]
    pub(crate) fn at(&mut self, cap: &InputCapability<u64>, time: u64) -> &mut D {
        if self.held.first().is_none_or(|held| *held.time() > time) {
            self.held.clear();
            self.held
                .extend((0..self.ports).map(|port| cap.delayed(&time, port)));
        }
        self.entry(time)
    }

    /// The data stashed for `time`, without holding a capability (for a sink).
    #[inline]
    pub(crate) fn entry(&mut self, time: u64) -> &mut D {
        let spare = &mut self.spare;
        self.pending
            .entry(time)
            .or_insert_with(|| spare.pop().unwrap_or_default())
    }

    /// The data of the times that are final (`is_final(time)`), in time order, without
    /// releasing it: to size the output once before [`Stash::release`].
    pub(crate) fn finals(&self, is_final: impl Fn(u64) -> bool) -> impl Iterator<Item = &D> {
        self.pending
            .iter()
            .take_while(move |(time, _)| is_final(**time))
            .map(|(_, data)| data)
    }

    /// Hands the data of every final time (`is_final(time)`) to `act`, in time order, and
    /// keeps it, emptied, for later times.
    #[inline]
    pub(crate) fn release(
        &mut self,
        is_final: impl Fn(u64) -> bool,
        mut act: impl FnMut(u64, &mut D),
    ) {
        while let Some(entry) = self.pending.first_entry() {
            if !is_final(*entry.key()) {
                break;
            }
            let (time, mut data) = entry.remove_entry();
            act(time, &mut data);
            data.clear();
            self.spare.push(data);
        }
    }

    /// The capability held for output `port`, at or before every time stashed: what was
    /// released is sent under it (each record carries its own time).
    pub(crate) fn cap(&self, port: usize) -> Option<&Capability<u64>> {
        self.held.get(port)
    }

    /// Every capability held, one per output, when any is.
    pub(crate) fn caps(&self) -> Option<&[Capability<u64>]> {
        (!self.held.is_empty()).then_some(&self.held[..])
    }

    /// Once what was released is sent: holds the capabilities at the least time still
    /// stashed, or lets them go.
    pub(crate) fn settle(&mut self) {
        match self.pending.keys().next() {
            Some(&least) => self.held.iter_mut().for_each(|cap| cap.downgrade(&least)),
            None => self.held.clear(),
        }
    }
}
