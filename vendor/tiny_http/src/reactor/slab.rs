//! golectra: the live connections of the reactor, indexed by token: the low half of a token is
//! a slot, the high half a generation number, so a stale event or deadline for a reused slot is
//! ignored.

use std::sync::Arc;

use super::Conn;

#[derive(Default)]
pub(super) struct Slab {
    entries: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    pub live: usize,
    generation: u32,
}

/// The slot of a token.
pub(super) fn slot(token: u64) -> usize {
    (token & 0xffff_ffff) as usize
}

impl Slab {
    pub fn insert(&mut self, make: impl FnOnce(u64) -> Arc<Conn>) -> Arc<Conn> {
        self.generation = self.generation.wrapping_add(1);
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let conn = make(((self.generation as u64) << 32) | index as u64);
        self.entries[index] = Some(conn.clone());
        self.live += 1;
        conn
    }

    pub fn get(&self, token: u64) -> Option<Arc<Conn>> {
        let entry = self.entries.get(slot(token))?.as_ref()?;
        (entry.token == token).then(|| entry.clone())
    }

    pub fn remove(&mut self, token: u64) {
        let index = slot(token);
        if self
            .entries
            .get(index)
            .and_then(Option::as_ref)
            .map(|c| c.token)
            == Some(token)
        {
            self.entries[index] = None;
            self.free.push(index);
            self.live -= 1;
        }
    }

    /// The live connections, without cloning them (for a scan under the slab's lock).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Conn>> {
        self.entries.iter().flatten()
    }

    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.entries.iter().flatten().cloned().collect()
    }
}
