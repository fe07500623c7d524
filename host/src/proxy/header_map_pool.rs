//! Header maps kept on each worker thread for the next head, so that the
//! common request does not allocate and free two maps (a map is two
//! allocations: its index and its entries). The maps of heads that Tandem
//! parses itself come from here (the own reader's requests, the upstream's
//! responses). A request's map comes back once its head has been written
//! upstream, a response's once its head has been written by the own
//! reader; both on the thread that parsed them, as every request stays on
//! its worker. A request that hyper parsed gives its map here too, which
//! only means one fewer new map later.

use std::cell::RefCell;

use http::HeaderMap;

/// Most maps kept per thread: more than the heads a worker has between
/// parsing and writing at once in the common case, few enough that the
/// memory kept is small.
const MOST_KEPT: usize = 32;

/// A map whose index has grown past this many headers is let go, not kept:
/// one large head must not leave large maps behind. (A map's value storage
/// for repeated names is not counted here; the head limits bound it.)
const LARGEST_KEPT: usize = 64;

thread_local! {
    static KEPT: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `capacity` headers: a kept one if
/// this thread has one, otherwise a new one.
pub fn take(capacity: usize) -> HeaderMap {
    match KEPT.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Empties `map` and keeps it for [`take`], unless this thread keeps
/// enough already or the map is too large to keep.
pub fn give_back(mut map: HeaderMap) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > LARGEST_KEPT {
        return;
    }
    map.clear();
    KEPT.with_borrow_mut(|kept| {
        if kept.len() < MOST_KEPT {
            kept.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_map_given_back_comes_back_empty_with_its_room() {
        let mut map = take(4);
        map.insert("x-one", HeaderValue::from_static("1"));
        let room = map.capacity();
        give_back(map);
        let again = take(2);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room, "the same allocation, reused");
    }

    #[test]
    fn a_large_map_is_let_go() {
        KEPT.with_borrow_mut(Vec::clear);
        let mut map = HeaderMap::with_capacity(LARGEST_KEPT * 2);
        map.insert("x-one", HeaderValue::from_static("1"));
        give_back(map);
        assert_eq!(KEPT.with_borrow(Vec::len), 0);
        give_back(HeaderMap::new());
        assert_eq!(KEPT.with_borrow(Vec::len), 0, "nothing to reuse");
    }

    #[test]
    fn no_more_than_the_most_kept_are_kept() {
        KEPT.with_borrow_mut(Vec::clear);
        for _ in 0..MOST_KEPT + 5 {
            give_back(HeaderMap::with_capacity(4));
        }
        assert_eq!(KEPT.with_borrow(Vec::len), MOST_KEPT);
    }
}
