//! A read-mostly map for a small, slowly growing set of keys (plugin names, error kinds, Redis
//! targets): a read loads an `ArcSwap` and takes no lock; an insert copies the map under a
//! mutex. Never for keys that grow with traffic (consumers, client addresses): each new key
//! copies the whole map.

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use ahash::AHashMap;
use arc_swap::{ArcSwap, Guard};

/// See the module documentation.
pub(crate) struct CowMap<K, V> {
    map: ArcSwap<AHashMap<K, V>>,
    /// Serialises inserts (reads never take it), so that two racing inserts do not lose one.
    write: Mutex<()>,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for CowMap<K, V> {
    fn default() -> Self {
        CowMap::new()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> CowMap<K, V> {
    pub(crate) fn new() -> Self {
        CowMap {
            map: ArcSwap::from_pointee(AHashMap::new()),
            write: Mutex::new(()),
        }
    }

    /// The value of `key`, made with `make` (called at most once per key, under the write
    /// lock) the first time.
    pub(crate) fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.map.load().get(key) {
            return v.clone();
        }
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(v) = current.get(key) {
            return v.clone();
        }
        let v = make();
        let mut next = (*current).clone();
        next.insert(key.clone(), v.clone());
        self.map.store(Arc::new(next));
        v
    }

    /// The map as it is now, for a look-up or a short iteration.
    pub(crate) fn load(&self) -> Guard<Arc<AHashMap<K, V>>> {
        self.map.load()
    }

    /// The map as it is now, to keep (across an `.await`).
    pub(crate) fn load_full(&self) -> Arc<AHashMap<K, V>> {
        self.map.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_each_value_once_and_keeps_it() {
        let m: CowMap<&'static str, Arc<u32>> = CowMap::new();
        let mut made = 0;
        let a = m.get_or_insert_with(&"a", || {
            made += 1;
            Arc::new(1)
        });
        let again = m.get_or_insert_with(&"a", || {
            made += 1;
            Arc::new(2)
        });
        assert_eq!(made, 1);
        assert!(Arc::ptr_eq(&a, &again));
        m.get_or_insert_with(&"b", || Arc::new(3));
        assert_eq!(m.load().len(), 2);
    }

    #[test]
    fn racing_inserts_lose_no_key() {
        let m: Arc<CowMap<u32, u32>> = Arc::new(CowMap::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for k in 0..50 {
                        m.get_or_insert_with(&(k * 4 + t), || k);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(m.load().len(), 200);
    }
}
